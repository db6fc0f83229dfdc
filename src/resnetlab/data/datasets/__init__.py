"""The built-in named datasets, one module each, each declaring `DATASET = NamedDataset(...)`; the registry
(data/registry.py) imports every module here on its first lookup. A new one is one more file."""
