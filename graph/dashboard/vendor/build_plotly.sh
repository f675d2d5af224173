#!/bin/sh
# Rebuild plotly-volt.min.js, the dashboard's partial plotly.js bundle (scatter, bar, sankey).
# Needs node >= 20 and the npm registry; the plotly.js version must be the one the plotly Python
# package bundles (python -c "import plotly.offline as o; print(o.get_plotlyjs_version())").
#   sh graph/dashboard/vendor/build_plotly.sh [VERSION]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
version=${1:-$("$here/../../../.venv/bin/python" -c "import plotly.offline as o; print(o.get_plotlyjs_version())")}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
npm init -y >/dev/null
npm install --ignore-scripts --no-audit --no-fund "plotly.js@$version" esbuild@0 >/dev/null
cp "$here/plotly-volt.entry.js" entry.js
banner="/**
* plotly.js v$version, partial bundle for the VOLT dashboard: core (scatter), bar, sankey
* (graph/dashboard/vendor/plotly-volt.entry.js, built by build_plotly.sh with esbuild)
* Copyright 2012-2026, Plotly, Inc. Licensed under the MIT license
*/"
# the maplibre stylesheet plotly's registry imports is emitted aside and not used (no map trace)
npx esbuild entry.js --bundle --minify --format=iife --global-name=Plotly --target=es2016 \
    --define:global=window --define:define.amd=false --legal-comments=eof \
    --banner:js="$banner" --footer:js="window.Plotly = Plotly;" --outfile=out/plotly-volt.min.js
cp out/plotly-volt.min.js "$here/plotly-volt.min.js"
echo "wrote $here/plotly-volt.min.js ($(wc -c < "$here/plotly-volt.min.js") bytes)"
