"""The data stages' library: archives and sources, the raw layout, resize, augmentations."""
