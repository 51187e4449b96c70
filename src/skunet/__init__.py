"""skunet: a reproducibility harness for SKU-Net on DRIVE and CHASE_DB1 (see the README)."""
