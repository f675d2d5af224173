"""Trading domain logic with no storage and no LangGraph: position plans and their exits
(:mod:`tools.trading.plans`) and the protections that block new orders
(:mod:`tools.trading.protections`)."""
