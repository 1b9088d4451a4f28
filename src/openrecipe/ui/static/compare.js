// Leaderboards with intervals per run, the prompting-first verdict, and every run's loss curves overlaid.
function cellText(cell) {
  if (!cell) return '–';
  if (cell.perplexity !== undefined) return cell.perplexity.toFixed(2);
  if (cell.score === null || Number.isNaN(cell.score)) return '–';
  return `${Math.round(100 * cell.score)} [${Math.round(100 * cell.low)}–${Math.round(100 * cell.high)}] n=${cell.n}`;
}

async function compareRuns() {
  const ids = [...document.querySelectorAll('.compare-pick:checked')].map(box => box.value);
  if (!ids.length) return;
  const data = await getJSON('/api/compare?ids=' + ids.join(','));
  const out = document.getElementById('compare-results');
  out.replaceChildren();
  const curves = {};
  for (const run of data.runs) {
    const section = el('section', { class: 'card leaderboard', 'data-run': run.id }, el('h2', {}, run.name));
    if (!run.leaderboards.length) section.append(el('p', { class: 'muted' }, t('compare.no_eval')));
    for (const board of run.leaderboards) {
      const head = el('tr', {}, el('th', {}, t('compare.variant')), ...board.domains.map(d => el('th', {}, d)));
      const rows = board.rows.map(row => el('tr', { class: 'variant-row' }, el('td', {}, row.variant),
        ...board.domains.map(d => el('td', {}, cellText(row.cells[d])))));
      section.append(el('h3', {}, `${board.stage}: ${t('compare.leaderboard')}`), el('table', { class: 'grid' }, el('thead', {}, head), el('tbody', {}, ...rows)));
      for (const verdict of board.verdicts || []) section.append(el('p', { class: 'verdict muted' }, verdict.text));
      for (const row of board.versus_baseline || []) {
        const better = row.delta_points > 0 && row.significant !== false;
        const where = row.domain ? ` [${row.domain}]` : '';
        const p = row.p_adjusted !== undefined ? `, p = ${Number(row.p_adjusted).toPrecision(2)}` : '';
        section.append(el('p', { class: 'verdict ' + (better ? 'ok' : 'error') },
          `${t('compare.verdict')}${where}: ${row.variant} ` + (better
            ? `${t('compare.verdict_better')} ${row.delta_points.toFixed(1)} ${t('compare.points')} (${board.baseline}${p})`
            : `${t('compare.verdict_worse')} (${board.baseline}, ${row.delta_points.toFixed(1)} ${t('compare.points')}${p})`)));
      }
    }
    out.append(section);
    for (const [stage, points] of Object.entries(run.curves)) curves[`${run.name}/${stage}`] = points;
  }
  const names = Object.keys(curves);
  const target = document.getElementById('compare-chart');
  target.replaceChildren();
  if (!names.length) return;
  const steps = [...new Set(names.flatMap(n => curves[n].map(p => p[0])))].sort((a, b) => a - b);
  const chart = lossChart(target, names);
  chart.setData([steps, ...names.map(n => { const m = new Map(curves[n]); return steps.map(x => m.has(x) ? m.get(x) : null); })]);
}
document.addEventListener('DOMContentLoaded', compareRuns);
