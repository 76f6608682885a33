"""Analytic cost model of the four lookup strategies, and the presets and fits of its parameters."""

from embmap.cost_models.analytic import ItemShape, item_cost, item_terms
from embmap.cost_models.presets import preset_profile

__all__ = ["ItemShape", "item_cost", "item_terms", "preset_profile"]
