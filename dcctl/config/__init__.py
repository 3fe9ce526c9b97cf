from dcctl.config.load import default_config_path, load_config, parse_config
from dcctl.config.schema import Config, ServiceConfig, SiteConfig

__all__ = ["Config", "ServiceConfig", "SiteConfig", "default_config_path", "load_config", "parse_config"]
