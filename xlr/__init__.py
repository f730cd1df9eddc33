"""xlr: hybrid batches vs language adapters for multilingual CLIP."""
