#include "dynamoe/report/report_page.h"

namespace dynamoe::report {

const std::string& chart_specs_js() {
  static const std::string js = R"JS(
// Vega-Lite specs of the report, shared by report.html and the SVG renderer.
// R: the report data; sel: one label per select axis. Rows carry color, facet, s0.. ("*": any).
function dmMatch(R, sel, row) {
  for (let i = 0; i < R.selects.length; ++i) {
    const v = row['s' + i];
    if (v !== '*' && v !== sel[i]) return false;
  }
  return true;
}
function dmSeedCount(rows) {
  const per = {};
  for (const r of rows) { const k = r.color + '|' + r.facet; (per[k] = per[k] || new Set()).add(r.seed); }
  return Math.max(0, ...Object.values(per).map(s => s.size));
}
function dmCharts(R, sel) {
  const pick = rows => rows.filter(r => dmMatch(R, sel, r));
  const facets = R.facets.filter(f => [].concat(R.runs, R.curves).some(r => r.facet === f && dmMatch(R, sel, r)));
  const facetOn = facets.length > 1;
  // The page is ~1130 px wide: the legend takes ~130, each facet's axis ~55.
  const W = facetOn ? Math.max(140, Math.min(300, Math.floor(960 / facets.length) - 60)) : 560;
  const colorTitle = R.layout.color || 'configuration';
  const C = {field: 'color', type: 'nominal', title: colorTitle,
             scale: {domain: R.colors, scheme: R.colors.length <= 10 ? 'tableau10' : 'category20'}};
  const X = {field: 'color', type: 'nominal', sort: R.colors, title: colorTitle, axis: {labelAngle: -35}};
  const wrap = (values, inner, resolve) => {
    const base = {data: {values: values}};
    if (!facetOn) return Object.assign(base, inner);
    return Object.assign(base, {
      facet: {column: {field: 'facet', type: 'nominal', sort: facets, title: R.layout.facet || null,
                       header: {labelFontSize: 13, labelFontWeight: 'bold'}}},
      spec: inner, resolve: {scale: Object.assign({y: 'shared'}, resolve || {})}});
  };
  const out = [];
  const charts = (id, title, note, values, make) => {
    out.push({id: id, title: title, note: note, spec: values.length ? make(values) : null});
  };
  const sd = (rows) => dmSeedCount(rows) > 1;

  // 1. The headline metric (test accuracy, or val perplexity for language models) per
  //    configuration: mean (point) +- std over seeds (rule), aggregated here so that each facet
  //    can keep only its own configurations on the x axis.
  const M = R.metric, mfmt = M.percent ? '.2%' : '.2f';
  const acc = {};
  for (const r of pick(R.runs)) {
    const k = r.facet + '\u0000' + r.color;
    (acc[k] = acc[k] || {facet: r.facet, color: r.color, values: []}).values.push(r.value);
  }
  const accRows = Object.values(acc).map(a => {
    const n = a.values.length, m = a.values.reduce((x, y) => x + y, 0) / n;
    const sdv = n > 1 ? Math.sqrt(a.values.reduce((x, y) => x + (y - m) * (y - m), 0) / (n - 1)) : 0;
    return {facet: a.facet, color: a.color, mean: m, std: sdv, lo: m - sdv, hi: m + sdv, seeds: n};
  });
  const accY = {field: 'mean', type: 'quantitative', scale: {zero: false}, title: M.title, axis: M.percent ? {format: '.1%'} : {}};
  // One chart (no facets): the facet value on x, the configurations side by side within it.
  const accX = {field: 'facet', type: 'nominal', sort: facets, title: facetOn ? (R.layout.facet || null) : null,
                axis: {labelAngle: 0, labelFontSize: 12, labelFontWeight: 'bold'}};
  const accOff = {field: 'color', type: 'nominal', sort: R.colors};
  charts(M.id, M.title[0].toUpperCase() + M.title.slice(1),
         'Final ' + M.title + (M.higher ? '' : ' (lower is better)') + ', mean over seeds (point) and \u00b1 one standard deviation (bar).',
         accRows, v => ({data: {values: v}, width: {step: Math.max(10, Math.min(40, Math.floor(720 / (facets.length * R.colors.length))))}, height: 240, layer: [
      {mark: {type: 'rule', strokeWidth: 2}, encoding: {x: accX, xOffset: accOff, y: Object.assign({}, accY, {field: 'lo'}),
                                                          y2: {field: 'hi'}, color: C}},
      {mark: {type: 'point', filled: true, size: 80, opacity: 1},
       encoding: {x: accX, xOffset: accOff, y: accY, color: C,
                  tooltip: [{field: 'facet', title: R.layout.facet || 'group'}, {field: 'color', title: colorTitle},
                            {field: 'mean', format: mfmt}, {field: 'std', format: mfmt}, {field: 'seeds'}]}}]}));

  // 2. Training curves.
  const curve = (metric, title, fmt) => {
    const v = pick(R.curves).filter(r => r.metric === metric);
    charts('curve-' + metric.replace(' ', '-'), title, null, v, v => wrap(v, {width: W, height: 200, layer: [].concat(
        sd(v) ? [{mark: {type: 'errorband', extent: 'stdev', opacity: 0.18},
                  encoding: {x: {field: 'step', type: 'quantitative'},
                             y: {field: 'value', type: 'quantitative', scale: {zero: false}, title: metric},
                             color: Object.assign({}, C, {legend: null})}}] : [],  // the legend shows the lines' colours
        [{mark: {type: 'line', strokeWidth: 1.8},
          encoding: {x: {field: 'step', type: 'quantitative', title: 'step'},
                     y: {aggregate: 'mean', field: 'value', type: 'quantitative', scale: {zero: false}, title: metric,
                         axis: fmt ? {format: fmt} : {}},
                     color: Object.assign({}, C, {legend: {symbolType: 'stroke', symbolStrokeWidth: 3, symbolOpacity: 1}}), tooltip: [{field: 'color', title: colorTitle}, {field: 'step'},
                                         {aggregate: 'mean', field: 'value', format: '.4f', title: metric}]}}])}));
  };
  curve('test accuracy', 'Test accuracy during training', '.0%');
  curve('test loss', 'Test loss during training', null);
  curve('val perplexity', 'Val perplexity during training', null);
  curve('val loss', 'Val loss during training', null);
  curve('train loss', 'Training loss (mean over each logging window)', null);

  // 3. Experts per layer (schedule) and active experts per token (router).
  const lay = [];
  for (const r of pick(R.layers)) {
    lay.push(Object.assign({}, r, {measure: 'experts (schedule)', value: r.experts}));
    lay.push(Object.assign({}, r, {measure: 'active per token', value: r.active}));
  }
  charts('layers', 'Experts per layer and active experts per token',
         'Dashed: experts the schedule gives each layer. Solid: mean experts the router activated per test token (mean over seeds).',
         lay, v => wrap(v, {width: W, height: 200, mark: {type: 'line', point: true, strokeWidth: 1.8},
      encoding: {x: {field: 'layer', type: 'ordinal', title: 'MoE layer', axis: {labelAngle: 0}},
                 y: {aggregate: 'mean', field: 'value', type: 'quantitative', title: 'experts'},
                 // the legend lists only the configurations drawn here (a dense baseline has no MoE layer)
                 color: Object.assign({}, C, {legend: {values: R.colors.filter(c => v.some(r => r.color === c))}}),
                 strokeDash: {field: 'measure', type: 'nominal', title: null,
                              scale: {domain: ['experts (schedule)', 'active per token'], range: [[5, 3], [1, 0]]}},
                 shape: {field: 'measure', type: 'nominal', title: null,
                         scale: {domain: ['experts (schedule)', 'active per token'], range: ['square', 'circle']}},
                 tooltip: [{field: 'color', title: colorTitle}, {field: 'layer'}, {field: 'measure'},
                           {aggregate: 'mean', field: 'value', format: '.2f', title: 'mean'}]}}));

  // 4. Expert load heatmaps: share of assignments x experts of the layer (1: balanced).
  const loads = pick(R.loads);
  const heatFacet = {column: {field: 'color', type: 'nominal', sort: R.colors, title: colorTitle}};
  if (facetOn) heatFacet.row = {field: 'facet', type: 'nominal', sort: facets, title: R.layout.facet || null};
  charts('load', 'Expert load per layer',
         'Share of the test tokens\u2019 expert assignments each expert received, times the experts of its layer (1 = balanced; first seed).',
         loads, v => ({data: {values: v}, facet: heatFacet,
      spec: {width: {step: 13}, height: {step: 15}, mark: {type: 'rect', stroke: 'white', strokeWidth: 0.5},
             encoding: {x: {field: 'expert', type: 'ordinal', title: 'expert', axis: {labelAngle: 0, labelFontSize: 8}},
                        y: {field: 'layer', type: 'ordinal', title: 'layer'},
                        color: {field: 'rel', type: 'quantitative', title: 'load / balanced',
                                scale: {scheme: 'blueorange', domainMid: 1}},
                        tooltip: [{field: 'run'}, {field: 'layer'}, {field: 'expert'},
                                  {field: 'load', format: '.1%', title: 'share'},
                                  {field: 'rel', format: '.2f', title: 'load / balanced'}]}}}));

  // 5. Gradient noise over training (whole model; mean over seeds).
  const noise = pick(R.gradnoise);
  const gn = (id, field, title, note) => {
    const v = noise.filter(r => r[field] > 0);
    charts(id, title, note, v, v => wrap(v, {width: W, height: 190, mark: {type: 'line', point: true, strokeWidth: 1.6},
        encoding: {x: {field: 'step', type: 'quantitative', title: 'step'},
                   y: {aggregate: 'mean', field: field, type: 'quantitative', scale: {type: 'log'}, title: title},
                   color: C, tooltip: [{field: 'color', title: colorTitle}, {field: 'step'},
                                       {aggregate: 'mean', field: field, format: '.3g', title: title}]}}));
  };
  gn('gradnoise-ratio', 'ratio', 'tr Var(g) / |mean g|\u00b2',
     'Gradient noise ratio: trace of the variance of mini-batch gradients over the squared norm of their mean, whole model (log scale).');
  gn('gradnoise-trace', 'trace', 'tr Var(g)', 'Trace of the variance of mini-batch gradients, whole model (log scale).');

  // 6. Gallery summary: experts (or routing entropy) by class.
  const gal = [];
  for (const g of (R.gallery || []).filter(g => dmMatch(R, sel, g)))
    for (const c of g.by_class) gal.push(Object.assign({group: g.title}, c));
  const byActive = (R.gallery || []).some(g => g.spread.max > g.spread.min);
  charts('gallery-classes', byActive ? 'Active experts by class' : 'Routing entropy by class',
         byActive ? 'Mean active experts per MoE layer over the test images of each class.'
                  : 'Every image activates the same number of experts per layer here, so classes differ only in how spread the router\u2019s probabilities are (mean entropy, nats).',
         gal, v => ({data: {values: v}, width: {step: 46}, height: {step: 18}, mark: 'rect',
      encoding: {x: {field: 'class', type: 'nominal', sort: null, title: null, axis: {labelAngle: -35}},
                 y: {field: 'group', type: 'nominal', sort: null, title: null},
                 color: {field: byActive ? 'active' : 'entropy', type: 'quantitative',
                         title: byActive ? 'experts / layer' : 'entropy', scale: {scheme: 'viridis'}},
                 tooltip: [{field: 'group'}, {field: 'class'}, {field: 'active', format: '.2f', title: 'experts / layer'},
                           {field: 'entropy', format: '.3f'}, {field: 'accuracy', format: '.1%'}]}}));
  return out;
}
)JS";
  return js;
}

namespace {

const char* kStyle = R"CSS(
:root { --ink: #1d2433; --muted: #5b6478; --line: #e3e7ef; --accent: #3b6fd8; --bg: #f6f8fb; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       color: var(--ink); background: var(--bg); }
header { background: linear-gradient(120deg, #1f2a44, #2f4f8f); color: white; padding: 26px 0 22px; }
.wrap { max-width: 1180px; margin: 0 auto; padding: 0 24px; }
header h1 { margin: 0 0 4px; font-size: 26px; font-weight: 650; letter-spacing: .2px; }
header .sub { color: #c9d6f2; font-size: 13px; }
.cards { display: flex; gap: 12px; margin-top: 16px; flex-wrap: wrap; }
.card { background: rgba(255,255,255,.12); border-radius: 8px; padding: 8px 14px; min-width: 110px; }
.card b { display: block; font-size: 20px; }
.card span { font-size: 12px; color: #d8e2f7; }
nav.controls { position: sticky; top: 0; z-index: 5; background: white; border-bottom: 1px solid var(--line);
               box-shadow: 0 1px 4px rgba(0,0,0,.04); }
nav.controls .wrap { display: flex; gap: 18px; align-items: center; padding-top: 9px; padding-bottom: 9px; flex-wrap: wrap; }
nav.controls label { font-weight: 600; color: var(--muted); font-size: 13px; }
nav.controls select { margin-left: 6px; font: inherit; padding: 3px 6px; border: 1px solid #c8cfdc; border-radius: 5px; }
nav.controls a { color: var(--accent); text-decoration: none; font-size: 13px; }
nav.controls .links { margin-left: auto; display: flex; gap: 12px; flex-wrap: wrap; }
section { background: white; border: 1px solid var(--line); border-radius: 10px; margin: 18px 0; padding: 16px 20px 18px; }
section h2 { margin: 0 0 4px; font-size: 18px; }
p.note { margin: 2px 0 10px; color: var(--muted); font-size: 13px; }
.chart { margin: 8px 0 14px; overflow-x: auto; }
.chart h3 { font-size: 14px; margin: 10px 0 0; }
.empty { color: var(--muted); font-style: italic; font-size: 13px; padding: 6px 0; }
table.results { border-collapse: collapse; width: 100%; font-size: 13px; font-variant-numeric: tabular-nums; }
table.results th { text-align: left; font-weight: 600; color: var(--muted); border-bottom: 2px solid var(--line);
                   padding: 6px 7px; white-space: nowrap; vertical-align: bottom; }
table.results th.num { text-align: right; }
table.results td { padding: 5px 7px; border-bottom: 1px solid #f0f2f6; white-space: nowrap; }
table.results td.num { text-align: right; }
table.results tr.best td { background: #eef6ee; }
table.results tr.best td.acc { font-weight: 700; }
table.results tr.tied td.acc { font-weight: 700; color: #555; }
table.results tr.sep td { border-top: 2px solid var(--line); }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px; vertical-align: baseline; }
.tablebar { display: flex; gap: 16px; align-items: center; margin-bottom: 8px; color: var(--muted); font-size: 13px; }
.gallery-tabs { display: flex; gap: 6px; flex-wrap: wrap; margin: 6px 0 12px; }
.gallery-tabs button { font: inherit; font-size: 12px; border: 1px solid #c8cfdc; background: white; border-radius: 14px;
                       padding: 3px 11px; cursor: pointer; color: var(--ink); }
.gallery-tabs button.on { background: var(--accent); border-color: var(--accent); color: white; }
.strip { display: flex; gap: 8px; flex-wrap: wrap; align-items: flex-start; margin: 4px 0 14px; }
.strip .label { width: 92px; font-weight: 600; font-size: 13px; padding-top: 20px; color: var(--muted); }
figure.thumb { margin: 0; text-align: center; width: 66px; }
figure.thumb img { width: 58px; height: 58px; image-rendering: pixelated; border: 4px solid #ccc; border-radius: 4px; display: block; margin: 0 auto; }
figure.thumb figcaption { font-size: 11px; line-height: 1.25; color: var(--ink); }
figure.thumb figcaption.wrong { color: #c02626; }
.legend-bar { display: inline-block; width: 140px; height: 9px; border-radius: 5px; vertical-align: middle;
              background: linear-gradient(90deg, rgb(49,130,189), rgb(230,85,13)); margin: 0 6px; }
.warn { background: #fff7e6; border: 1px solid #f3d49b; color: #6b4b00; border-radius: 8px; padding: 8px 14px; margin: 14px 0; font-size: 13px; }
ul.figures { columns: 3; font-size: 12px; color: var(--muted); padding-left: 18px; }
footer { color: var(--muted); font-size: 12px; padding: 10px 0 30px; }
#report-status { display: none; }
)CSS";

const char* kApp = R"JS(
const R = JSON.parse(document.getElementById('report-data').textContent);
const hasCharts = typeof vegaEmbed === 'function';
const sel = R.selects.map(s => s.labels[0]);
let showAll = false, galleryPick = 0;
const el = (tag, attrs, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v; else if (k === 'text') e.textContent = v; else e.setAttribute(k, v);
  }
  for (const k of kids) if (k != null) e.append(k);
  return e;
};
const fmtCount = x => x == null ? '\u2013' : x >= 1e9 ? (x / 1e9).toFixed(2) + 'G' : x >= 1e6 ? (x / 1e6).toFixed(2) + 'M'
                    : x >= 1e3 ? (x / 1e3).toFixed(1) + 'K' : String(Math.round(x));
const pct = x => x == null ? '\u2013' : (100 * x).toFixed(2);
const palette = ['#4c78a8','#f58518','#e45756','#72b7b2','#54a24b','#eeca3b','#b279a2','#ff9da6','#9d755d','#bab0ac'];
const colorOf = c => { const i = R.colors.indexOf(c); return i < 0 ? '#999' : palette[i % palette.length]; };

function header() {
  const c = R.counts;
  const cards = [[c.runs, 'runs'], [c.done, 'finished'], [c.groups, 'configurations'],
                 [c.hours.toFixed(c.hours < 10 ? 2 : 1), 'training hours']];
  if (c.failed) cards.push([c.failed, 'failed']);
  document.getElementById('cards').replaceChildren(...cards.map(([v, l]) => el('div', {class: 'card'}, el('b', {text: String(v)}), el('span', {text: l}))));
  document.getElementById('sub').textContent = 'sweep folder ' + R.dir + ' \u00b7 generated ' + R.generated +
    (R.layout.seed ? ' \u00b7 mean \u00b1 std over ' + R.layout.seed + 's' : '');
  const w = document.getElementById('warnings');
  if (R.warnings.length) w.replaceChildren(el('div', {class: 'warn'}, el('b', {text: 'Left out: '}), R.warnings.join('; ')));
}

function controls() {
  const box = document.getElementById('selects');
  R.selects.forEach((s, i) => {
    const select = el('select', {id: 'sel-' + i});
    for (const l of s.labels) select.append(el('option', {value: l, text: l}));
    select.value = sel[i];
    select.addEventListener('change', () => { sel[i] = select.value; galleryPick = 0; render(); });
    box.append(el('label', {}, s.axis, select));
  });
}

function tableRows() {
  return R.table.filter(r => showAll || dmMatch(R, sel, r));
}

function renderTable() {
  const rows = tableRows();
  const axes = R.axes.filter(a => showAll || !R.selects.some(s => s.axis === a));
  const hasGrid = R.table.some(r => r.grid);
  const head = el('tr', {});
  const M = R.metric;
  const numeric = [['seeds', 'runs finished (of the configuration\u2019s runs)'],
                   [M.percent ? 'accuracy %' : 'perplexity', 'final ' + M.title + ', mean \u00b1 std over seeds'],
                   ['loss', 'final ' + M.loss + ', mean'], ['params', 'trainable parameters'],
                   ['active', 'parameters a test example uses: dense part, gates and the active share of each layer\u2019s experts'],
                   [M.percent ? 'FLOPs/ex.' : 'FLOPs/token', 'forward FLOPs per ' + (M.percent ? 'example' : 'token') + ': measured MoE-layer FLOPs + 2 \u00d7 the other weights'],
                   ['exp./token', 'active experts per token, mean over MoE layers'], ['experts per layer', 'set by the schedule'],
                   ['time/run', 'training time per run']];
  for (const c of [].concat(hasGrid ? ['grid'] : [], axes)) head.append(el('th', {text: c}));
  for (const [c, tip] of numeric) head.append(el('th', {class: c === 'experts per layer' ? '' : 'num', title: tip, text: c}));
  // r.best: 'best' (beats the runner-up at p < 0.05) or 'tied' on the best mean of its select combination.
  const body = [];
  let prev = null;
  for (const r of rows) {
    const k = R.selects.map((s, i) => r['s' + i]).join('|');
    const tr = el('tr', {class: (r.best || '') + (showAll && prev !== null && prev !== k ? ' sep' : ''),
                         title: r.best ? (r.best === 'best' ? 'best mean; beats the runner-up, Welch p = ' : 'best mean, but tied with the runner-up: Welch p = ') + r.best_p.toPrecision(2) : ''});
    prev = k;
    if (hasGrid) tr.append(el('td', {text: r.grid || 'main'}));
    axes.forEach((a, j) => {
      const v = r.axes[a] == null ? '\u2013' : r.axes[a];
      const td = el('td', {});
      if (a === R.layout.color) td.append(el('span', {class: 'swatch', style: 'background:' + colorOf(r.color)}));
      td.append(v);
      tr.append(td);
    });
    const num2 = x => M.percent ? pct(x) : x.toFixed(2);
    const acc = r.value_mean == null ? '\u2013' : num2(r.value_mean) + (r.n > 1 ? ' \u00b1 ' + num2(r.value_std) : '');
    const cells = [[r.n + (r.runs > r.n ? ' of ' + r.runs : ''), ''], [acc, 'acc'],
                   [r.loss_mean == null ? '\u2013' : r.loss_mean.toFixed(4), ''],
                   [fmtCount(r.params), ''], [fmtCount(r.active_params), ''], [fmtCount(r.flops), ''],
                   [r.active_experts == null ? '\u2013' : r.active_experts.toFixed(2), ''], [r.experts || '\u2013', 'txt'],
                   [r.seconds == null ? '\u2013' : Math.round(r.seconds) + ' s', '']];
    for (const [v, cls] of cells) tr.append(el('td', {class: cls === 'txt' ? '' : 'num ' + cls, text: String(v)}));
    body.push(tr);
  }
  const table = el('table', {class: 'results'}, el('thead', {}, head), el('tbody', {}, ...body));
  document.getElementById('table').replaceChildren(table);
  document.getElementById('table-count').textContent = rows.length + ' of ' + R.table.length + ' configurations';
}

function renderGallery() {
  const box = document.getElementById('gallery');
  if (!box) return;  // language-model reports have no image gallery
  const groups = (R.gallery || []).filter(g => dmMatch(R, sel, g));
  if (!groups.length) {
    box.replaceChildren(el('div', {class: 'empty', text: (R.gallery || []).length ? 'No dynamically routed run in this selection.'
                                                           : 'No dynamically routed MoE run with a checkpoint: nothing to rank.'}));
    return;
  }
  if (galleryPick >= groups.length) galleryPick = 0;
  const tabs = el('div', {class: 'gallery-tabs'});
  groups.forEach((g, i) => {
    const b = el('button', {class: i === galleryPick ? 'on' : '', text: g.title});
    b.addEventListener('click', () => { galleryPick = i; renderGallery(); });
    tabs.append(b);
  });
  const g = groups[galleryPick];
  // Ranked by experts per layer; when every image used the same count, by routing entropy.
  const constant = g.spread.max === g.spread.min;
  const value = im => constant ? im.entropy : im.active;
  const shown = g.easy.concat(g.hard).map(value);
  const lo = constant ? Math.min(...shown) : g.spread.min, hi = constant ? Math.max(...shown) : g.spread.max;
  const shade = a => {
    const t = hi > lo ? (a - lo) / (hi - lo) : 0.5;
    return 'rgb(' + Math.round(49 + t * 181) + ',' + Math.round(130 - t * 45) + ',' + Math.round(189 - t * 176) + ')';
  };
  const caption = im => constant ? 'H ' + im.entropy.toFixed(2) : im.active.toFixed(2);
  const strip = (label, images) => el('div', {class: 'strip'}, el('div', {class: 'label', text: label}),
    ...images.map(im => el('figure', {class: 'thumb', title: 'test image ' + im.index + ': ' + im.label + ', predicted ' + im.pred +
                                        '\nexperts per layer ' + im.active.toFixed(2) + ', routing entropy ' + im.entropy.toFixed(3)},
      el('img', {src: im.src, alt: im.label, style: 'border-color:' + shade(value(im))}),
      el('figcaption', {class: im.label === im.pred ? '' : 'wrong',
                        text: caption(im) + (im.label === im.pred ? '' : ' \u2717')}))));
  const note = el('p', {class: 'note'},
    'Run ' + g.run + ' (' + g.router + ' routing, ' + g.layers + ' MoE layers), all ' + g.images + ' test images. ',
    constant ? 'Every image activated ' + g.spread.min.toFixed(2) +
               ' experts per layer (the count is fixed per layer for this router), so images are ranked by the entropy H of their routing probabilities (mean over layers): confident routing first, most uncertain last. '
             : 'Experts per layer (mean over layers) range from ' + lo.toFixed(2) + ' to ' + hi.toFixed(2) + ' (mean ' + g.spread.mean.toFixed(2) + '). ',
    'Accuracy of the easier half: ' + pct(g.easy_half_accuracy) + '%, of the harder half: ' + pct(g.hard_half_accuracy) + '%. ',
    constant ? 'Caption: routing entropy (nats); \u2717 marks a misclassified image. Frame: lowest' : 'Caption: experts per layer; \u2717 marks a misclassified image. Frame: fewest',
    el('span', {class: 'legend-bar'}), constant ? 'highest.' : 'most.');
  box.replaceChildren(tabs, note, strip(constant ? 'most certain' : 'fewest experts', g.easy),
                      strip(constant ? 'least certain' : 'most experts', g.hard));
}

const chartIds = [];
async function renderCharts() {
  const box = document.getElementById('charts');
  const specs = dmCharts(R, sel);
  const jobs = [];
  for (const c of specs) {
    let holder = document.getElementById('chart-' + c.id);
    if (!holder) continue;
    const body = el('div', {});
    holder.replaceChildren(...[el('h3', {text: c.title}), c.note ? el('p', {class: 'note', text: c.note}) : null, body].filter(x => x));
    if (!c.spec) { body.append(el('div', {class: 'empty', text: 'No data for this selection.'})); continue; }
    if (!hasCharts) { body.append(el('div', {class: 'empty', text: 'Chart library missing (see the note at the top).'})); continue; }
    jobs.push(vegaEmbed(body, c.spec, {actions: false, renderer: 'svg', config: {font: 'system-ui, Helvetica, Arial, sans-serif'}}));
  }
  return Promise.all(jobs);
}

function renderFigures() {
  const list = document.getElementById('figure-list');
  if (!R.figures.length) { list.replaceChildren(el('li', {text: 'none written'})); return; }
  list.replaceChildren(...R.figures.map(f => el('li', {}, el('a', {href: f, text: f}))));
}

let renderCount = 0;
async function render() {
  const mine = ++renderCount;
  renderTable();
  renderGallery();
  try { await renderCharts(); } catch (e) { window.__reportErrors.push('chart: ' + (e && e.message || e)); }
  if (mine === renderCount) window.__reportDone();
}

header();
controls();
renderFigures();
document.getElementById('show-all').addEventListener('change', e => { showAll = e.target.checked; renderTable(); });
render();
)JS";

const char* kHook = R"JS(
window.__reportErrors = [];
window.__reportWarnings = [];
(function () {
  const err = console.error.bind(console), warn = console.warn.bind(console);
  console.error = function (...a) { window.__reportErrors.push(a.map(String).join(' ')); err(...a); };
  console.warn = function (...a) { window.__reportWarnings.push(a.map(String).join(' ')); warn(...a); };
  window.addEventListener('error', e => window.__reportErrors.push('error: ' + (e.message || e)));
  window.addEventListener('unhandledrejection', e => window.__reportErrors.push('unhandled: ' + (e.reason && e.reason.message || e.reason)));
  window.__reportDone = function () {
    const s = document.getElementById('report-status');
    const status = window.__reportErrors.length ? 'errors' : 'ok';
    document.body.setAttribute('data-report-status', status);
    s.textContent = status + ' errors=' + window.__reportErrors.length + ' warnings=' + window.__reportWarnings.length +
                    (window.__reportErrors.length ? ' errors: ' + window.__reportErrors.join(' | ') : '') +
                    (window.__reportWarnings.length ? ' warnings: ' + window.__reportWarnings.join(' | ') : '');
  };
})();
)JS";

}  // namespace

std::string report_page(const std::string& data_json, const std::string& library_js, const std::string& title,
                        bool language_model) {
  const std::string metric = language_model ? "perplexity" : "accuracy";
  std::string h;
  h.reserve(data_json.size() + library_js.size() + 40000);
  h += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
       "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>";
  h += title + " \xC2\xB7 dynamoe report</title>\n";
  h += "<link rel=\"icon\" href=\"data:,\">\n";  // no favicon request
  h += "<script>" + std::string(kHook) + "</script>\n<style>" + kStyle + "</style>\n</head>\n<body>\n";
  h += "<header><div class=\"wrap\"><h1>" + title + "</h1><div class=\"sub\" id=\"sub\"></div><div class=\"cards\" id=\"cards\"></div></div></header>\n";
  h += "<nav class=\"controls\"><div class=\"wrap\"><span id=\"selects\" style=\"display:flex;gap:18px\"></span><span class=\"links\">"
       "<a href=\"#results\">results</a><a href=\"#" + metric + "\">" + metric + "</a><a href=\"#curves\">curves</a><a href=\"#layers\">layers</a>"
       "<a href=\"#load\">load</a>" +
       std::string(language_model ? "" : "<a href=\"#noise\">gradient noise</a><a href=\"#gallery-section\">gallery</a>") +
       "<a href=\"#figures\">figures</a>"
       "</span></div></nav>\n<main class=\"wrap\">\n<div id=\"warnings\"></div>\n";
  h += "<section id=\"results\"><h2>Results</h2><p class=\"note\">One row per configuration: mean \xC2\xB1 standard deviation "
       "of the final " + std::string(language_model ? "val perplexity" : "test accuracy") +
       " over seeds. Active parameters count each MoE layer's experts in proportion to the experts a "
       "test token activated; FLOPs per " + (language_model ? "token" : "example") +
       " are the measured expert and gate FLOPs of the MoE layers plus 2 \xC3\x97 the "
       "other weights. Green: the best mean " + (language_model ? "perplexity (lowest)" : "accuracy") + " where it beats the runner-up (Welch's t-test over seeds, p < 0.05); bold without green: the best mean, tied with the runner-up (a single seed is always a tie).</p><div class=\"tablebar\"><span id=\"table-count\"></span><label><input type=\"checkbox\" "
       "id=\"show-all\"> all configurations</label></div><div id=\"table\" style=\"overflow-x:auto\"></div></section>\n";
  h += "<div id=\"charts\">\n";
  h += "<section id=\"" + metric + "\"><h2>" + (language_model ? "Perplexity" : "Accuracy") + "</h2><div class=\"chart\" id=\"chart-" +
       metric + "\"></div></section>\n";
  h += "<section id=\"curves\"><h2>Training curves</h2><p class=\"note\">Mean over seeds; the band is \xC2\xB1 one standard deviation.</p>"
       + std::string(language_model ? "<div class=\"chart\" id=\"chart-curve-val-perplexity\"></div><div class=\"chart\" id=\"chart-curve-val-loss\"></div>"
                                    : "<div class=\"chart\" id=\"chart-curve-test-accuracy\"></div><div class=\"chart\" id=\"chart-curve-test-loss\"></div>") +
       "<div class=\"chart\" id=\"chart-curve-train-loss\"></div></section>\n";
  h += "<section id=\"layers\"><h2>Experts per layer</h2><div class=\"chart\" id=\"chart-layers\"></div></section>\n";
  h += "<section id=\"load\"><h2>Expert load</h2><div class=\"chart\" id=\"chart-load\"></div></section>\n";
  // Language models record no gradient noise and have no test images: those sections are left out.
  if (!language_model) {
    h += "<section id=\"noise\"><h2>Gradient noise</h2><p class=\"note\">Recorded every <code>train.gradnoise_every</code> steps "
         "from <code>train.gradnoise_batches</code> mini-batch gradients at fixed parameters (docs/moe.md).</p>"
         "<div class=\"chart\" id=\"chart-gradnoise-ratio\"></div><div class=\"chart\" id=\"chart-gradnoise-trace\"></div></section>\n";
    h += "<section id=\"gallery-section\"><h2>Easy and hard test images</h2><p class=\"note\">Test images ranked by the experts "
         "they activated (mean over the MoE layers) in dynamically routed runs (first seed): the fewest next to the most.</p>"
         "<div id=\"gallery\"></div><div class=\"chart\" id=\"chart-gallery-classes\"></div></section>\n";
  }
  h += "</div>\n";
  h += "<section id=\"figures\"><h2>Figures for papers</h2><p class=\"note\">SVG files written next to this report, one per "
       "chart and selection (the same charts as above), and one per gallery.</p><ul class=\"figures\" id=\"figure-list\"></ul></section>\n";
  h += "</main>\n<footer class=\"wrap\">Written by <code>dynamoe report</code>. Self-contained: the chart library (Vega, "
       "Vega-Lite, vega-embed) and every image are inside this file.</footer>\n<div id=\"report-status\"></div>\n";
  h += "<script type=\"application/json\" id=\"report-data\">" + data_json + "</script>\n";
  if (!library_js.empty()) h += "<script>" + library_js + "</script>\n";
  h += "<script>" + chart_specs_js() + kApp + "</script>\n</body>\n</html>\n";
  return h;
}

std::string figure_script() {
  return R"JS(
// node figure script: argv vega.min.js vega-lite.min.js data.json out_dir
const fs = require('fs'), path = require('path'), Module = require('module');
const [vegaPath, vlPath, dataPath, outDir] = process.argv.slice(2);
const resolve = Module._resolveFilename;
Module._resolveFilename = function (request, ...rest) {
  if (request === 'vega') return path.resolve(vegaPath);
  return resolve.call(this, request, ...rest);
};
const vega = require('vega');
const vl = require(path.resolve(vlPath));
const R = JSON.parse(fs.readFileSync(dataPath, 'utf8'));
)JS" + chart_specs_js() + R"JS(
function combos(i) {
  if (i >= R.selects.length) return [[]];
  const rest = combos(i + 1);
  const out = [];
  for (const l of R.selects[i].labels) for (const r of rest) out.push([l].concat(r));
  return out;
}
(async () => {
  let failed = 0;
  for (const sel of combos(0)) {
    const suffix = sel.length ? '-' + sel.join('-') : '';
    for (const c of dmCharts(R, sel)) {
      if (!c.spec) continue;
      const spec = Object.assign({}, c.spec, {background: 'white',
        title: {text: c.title + (sel.length ? ' (' + sel.join(', ') + ')' : ''), anchor: 'start', fontSize: 13}});
      try {
        const compiled = vl.compile(spec).spec;
        const view = new vega.View(vega.parse(compiled), {renderer: 'none', logLevel: vega.Error});
        const svg = await view.toSVG();
        const file = path.join(outDir, c.id + suffix + '.svg');
        fs.writeFileSync(file, svg);
        console.log('wrote ' + file);
        view.finalize();
      } catch (e) {
        failed++;
        console.log('failed ' + c.id + suffix + ': ' + (e && e.message || e));
      }
    }
  }
  process.exit(failed ? 1 : 0);
})();
)JS";
}

}  // namespace dynamoe::report
