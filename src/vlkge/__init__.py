"""vlkge: multimodal knowledge-graph embeddings with vision-language models."""

from vlkge.errors import ConfigError, DataError, VlkgeError

__version__ = "0.1.0"

__all__ = ["ConfigError", "DataError", "VlkgeError", "__version__"]
