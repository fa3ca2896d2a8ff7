"""Shipped bundles, installed as ``bvdm_data.pretrained`` and found by name (``"hela"``)."""
