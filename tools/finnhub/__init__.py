"""VOLT's Finnhub layer: REST gateway, trade stream, live market data, alternative data.

- :mod:`~tools.finnhub.gateway`: :class:`FinnhubGateway`, all REST calls (rate limited,
  retried, cached, breaker-guarded, deadline-bound), and ``open_gateway``; with
  :mod:`~tools.finnhub.throttle` (rate limiter, backoff), :mod:`~tools.finnhub.cache`
  (response cache), :mod:`~tools.finnhub.responses` (Finnhub bodies as VOLT data),
  :mod:`~tools.finnhub.session` (the key in a header, request timeouts bound by the deadline)
  and :mod:`~tools.finnhub.errors`;
- :mod:`~tools.finnhub.trade_stream`: the WebSocket trade stream, feeding
  :mod:`~tools.finnhub.live_bars` (trades into daily and intraday bars);
- :mod:`~tools.finnhub.live_market`: the live :class:`~tools.market_data.MarketDataset`
  and fill price;
- :mod:`~tools.finnhub.alt_data`: news, sentiment, analysts and forex for the specialists.

Import from the modules; this package imports nothing, so importing one module does not
load the others.
"""
