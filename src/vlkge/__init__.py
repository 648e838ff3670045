"""vlkge: multimodal knowledge-graph embeddings with vision-language models."""

from vlkge.openmp import yield_busy_cores

yield_busy_cores()  # before torch loads libgomp (vlkge/openmp.py)

from vlkge.config.choices import provide  # noqa: E402
from vlkge.errors import ConfigError, DataError, VlkgeError  # noqa: E402

__version__ = "0.1.0"

__all__ = ["ConfigError", "DataError", "VlkgeError", "__version__"]


def _registry_choices() -> dict[str, tuple]:
    """The allowed values of the registry-backed config keys, read from the registries on
    first use: the package root is the one place that hands them to the base layer
    (vlkge.config.choices, docs/architecture.md)."""
    from vlkge.training.choices import registry_choices

    return registry_choices()


provide(_registry_choices)
