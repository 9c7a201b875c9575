"""`timellm`: Time-LLM (Jin et al., ICLR 2024) as its authors built it: a frozen LLM reprogrammed to
forecast, trained with MSE through a linear head. See `modeling_timellm` for the design choices."""

from tsplugin.models.timellm.configuration_timellm import FORECAST_DEFAULTS, TimeLLMConfig, forecast_block
from tsplugin.models.timellm.modeling_timellm import TimeLLMForForecasting

__all__ = ["FORECAST_DEFAULTS", "TimeLLMConfig", "TimeLLMForForecasting", "forecast_block"]
