'use strict';
// The dashboard's partial plotly.js bundle: only the trace types its pages draw.
// scatter (lines, markers, fills) is in core; bar (bars, MACD histogram); sankey (feedback flow).
// A page drawing another trace type must add it here and rebuild (build_plotly.sh).
var Plotly = require('plotly.js/lib/core');

Plotly.register([require('plotly.js/lib/bar'), require('plotly.js/lib/sankey')]);

module.exports = Plotly;
