// The data table: pages come from the server already searched and sorted; problems sit on their cells.
const card = document.getElementById('table-card');
const state = { page: 1, sort: null, desc: false, q: '', only: null };

async function uploadFile() {
  const file = document.getElementById('upload-file').files[0];
  if (!file) return;
  const data = await post('/api/data/upload?name=' + encodeURIComponent(file.name), file, true);
  location.href = '/data?file=' + encodeURIComponent(data.file);
}
async function openPath() {
  try {
    const data = await post('/api/data/open', { path: document.getElementById('open-path').value });
    location.href = '/data?file=' + encodeURIComponent(data.file);
  } catch (error) { alert(error.message); }
}

async function loadPage() {
  if (!card) return;
  const params = new URLSearchParams({ file: card.dataset.file, page: state.page, q: state.q, desc: state.desc });
  if (state.sort) params.set('sort', state.sort);
  if (state.only) params.set('only', state.only);
  const data = await getJSON('/api/data/page?' + params);
  renderProblems(data.file_problems);
  renderTable(data);
  document.getElementById('page-label').textContent = `${t('data.page')} ${data.page} / ${data.pages}`;
  document.getElementById('table-status').textContent =
    `${data.total} / ${data.num_rows} ${t('data.rows')} · ${data.num_problem_rows} ${t('data.problems')}`;
  const notes = [data.patch ? `${t('data.patch')} ${data.patch}` : '', data.patch_set_aside ? `${t('data.patch_set_aside')} ${data.patch_set_aside}` : ''];
  document.getElementById('patch-note').textContent = notes.filter(Boolean).join(' · ');
  card.dataset.pages = data.pages;
}

function renderProblems(problems) {
  const box = document.getElementById('file-problems');
  box.replaceChildren(...problems.map(p => el('p', { class: 'error file-problem' }, `${t('data.file_problem')}: ${p.message}`)));
}

function renderTable(data) {
  const table = document.getElementById('data-table');
  const head = el('tr', {}, el('th', {}, t('data.line')));
  for (const column of data.columns) {
    const arrow = state.sort === column ? (state.desc ? ' ▼' : ' ▲') : '';
    head.append(el('th', { class: 'sortable', 'data-column': column, onclick: () => sortBy(column) }, column + arrow));
  }
  head.append(el('th', {}, ''));
  table.tHead.replaceChildren(head);
  table.tBodies[0].replaceChildren(...data.rows.map(row => renderRow(data.columns, row)));
}

function renderRow(columns, row) {
  const tr = el('tr', { 'data-row': row.row, 'data-line': row.line });
  if (row.problems.length) tr.classList.add('has-problem');
  if (row.flagged) tr.classList.add('flagged');
  tr.append(el('td', { class: 'line' }, String(row.line)));
  const rowLevel = row.problems.filter(p => !p.field || !columns.includes(p.field));
  columns.forEach((column, index) => {
    const td = el('td', { class: 'cell', 'data-column': column }, row.values[column] ?? '');
    if (row.edited.includes(column)) td.classList.add('edited');
    const here = row.problems.filter(p => p.field === column);
    if (index === 0) here.push(...rowLevel);
    for (const problem of here) {
      if (problem.field === column) td.classList.add('bad-cell');
      td.append(el('span', { class: 'cell-problem' }, problem.message));
    }
    td.addEventListener('dblclick', () => editRow(tr, columns, row));
    tr.append(td);
  });
  tr.append(el('td', {},
    el('button', { class: 'edit-row', onclick: () => editRow(tr, columns, row) }, t('data.edit')),
    el('button', { class: 'flag-row', onclick: () => flagRow(row) }, row.flagged ? t('data.unflag') : t('data.flag'))));
  return tr;
}

function editRow(tr, columns, row) {
  if (tr.classList.contains('editing')) return;
  tr.classList.add('editing');
  columns.forEach((column, index) => {
    const td = tr.children[index + 1];
    const input = el('textarea', { class: 'cell-input', 'data-column': column, rows: 2 });
    input.value = row.values[column] ?? '';
    td.replaceChildren(input);
  });
  tr.lastChild.replaceChildren(
    el('button', { class: 'save-row primary', onclick: () => saveRow(tr, row) }, t('data.save')),
    el('button', { onclick: loadPage }, t('data.cancel')));
}

async function saveRow(tr, row) {
  const values = {};
  tr.querySelectorAll('.cell-input').forEach(input => { values[input.dataset.column] = input.value; });
  await post('/api/data/edit', { file: card.dataset.file, row: row.row, values });
  await loadPage();
}

async function flagRow(row) {
  await post('/api/data/flag', { file: card.dataset.file, row: row.row, flagged: !row.flagged });
  await loadPage();
}

function sortBy(column) {
  if (state.sort === column) state.desc = !state.desc; else { state.sort = column; state.desc = false; }
  state.page = 1;
  loadPage();
}

async function findProposals() {
  const box = document.getElementById('proposals');
  const data = await post('/api/data/proposals', { file: card.dataset.file });
  if (!data.proposals.length) { box.replaceChildren(el('p', { class: 'muted' }, t('data.no_proposals'))); return; }
  box.replaceChildren(el('table', { class: 'grid' }, el('tbody', {}, ...data.proposals.map(renderProposal))));
}

function renderProposal(proposal) {
  const what = proposal.kind === 'pii'
    ? `${proposal.field}: ${proposal.old} → ${t('data.replace_with')} ${proposal.new}`
    : `${t('data.duplicate_of')} ${proposal.detail}`;
  const status = el('span', { class: 'decision' }, proposal.decision ? t('data.' + proposal.decision) : '');
  const decide = decision => async () => {
    await post('/api/data/decide', { file: card.dataset.file, proposal, decision });
    status.textContent = t('data.' + decision);
    loadPage();
  };
  return el('tr', { class: 'proposal', 'data-key': proposal.key },
    el('td', {}, `${t('data.line')} ${proposal.line}`), el('td', {}, proposal.rule), el('td', {}, what),
    el('td', {}, el('button', { class: 'accept', onclick: decide('accepted') }, t('data.accept')),
      el('button', { class: 'reject', onclick: decide('rejected') }, t('data.reject')), status));
}

if (card) {
  let timer = null;
  document.getElementById('search').addEventListener('input', event => {
    clearTimeout(timer);
    timer = setTimeout(() => { state.q = event.target.value; state.page = 1; loadPage(); }, 200);
  });
  document.getElementById('only-errors').addEventListener('change', event => {
    state.only = event.target.checked ? 'errors' : null; document.getElementById('only-flagged').checked = false; state.page = 1; loadPage();
  });
  document.getElementById('only-flagged').addEventListener('change', event => {
    state.only = event.target.checked ? 'flagged' : null; document.getElementById('only-errors').checked = false; state.page = 1; loadPage();
  });
  document.getElementById('prev-page').addEventListener('click', () => { if (state.page > 1) { state.page--; loadPage(); } });
  document.getElementById('next-page').addEventListener('click', () => { if (state.page < +card.dataset.pages) { state.page++; loadPage(); } });
  loadPage();
}

document.getElementById('identity-form').addEventListener('htmx:afterRequest', event => {
  const data = JSON.parse(event.detail.xhr.responseText);
  const rows = data.items.map(item => el('tr', { class: 'identity-' + item.language },
    el('td', {}, item.language), el('td', {}, item.question), el('td', {}, item.answer),
    el('td', { class: 'muted' }, item.held_out ? t('identity.held_out') : '')));
  document.getElementById('identity-items').replaceChildren(el('table', { class: 'grid', id: 'identity-table' },
    el('thead', {}, el('tr', {}, el('th', {}, ''), el('th', {}, t('identity.question')), el('th', {}, t('identity.answer')), el('th', {}, ''))),
    el('tbody', {}, ...rows)));
});
