"""Stack configuration: pydantic models and the loader for the `pgha:` namespace."""

from config.load import ConfigError, collect, parse
from config.models import ClusterConfig, Host

__all__ = ["ClusterConfig", "ConfigError", "Host", "collect", "parse"]
