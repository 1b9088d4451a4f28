// Start a private server for one artifact; its key is shown here once and stored only as a hash.
async function startServer(button) {
  const section = button.closest('.run-ship');
  const data = await post('/api/servers', { job: +section.dataset.job, path: button.dataset.path });
  section.querySelector('.server-key').replaceChildren(
    el('p', {}, t('ship.key_once'), ' ', el('span', { class: 'key', id: 'server-key' }, data.key)),
    el('p', {}, `${t('ship.endpoint')}: `, el('code', {}, data.endpoint)));
}
