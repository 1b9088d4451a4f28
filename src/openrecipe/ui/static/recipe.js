// The recipe form is generated from the recipe's JSON schema; the YAML beside it is what gets saved.
const yamlBox = document.getElementById('recipe-yaml');
const statusBox = document.getElementById('recipe-status');
let editor = null;
let fromYaml = false;
let validateTimer = null;

function forEditor(schema) {
  // json-editor resolves "#/definitions/..."; pydantic writes "#/$defs/...".
  const text = JSON.stringify(schema).split('#/$defs/').join('#/definitions/');
  const out = JSON.parse(text);
  out.definitions = out.$defs || {};
  delete out.$defs;
  // The server checks every value with the CLI's own validator and messages; the form only collects them.
  (function dropPatterns(node) {
    if (Array.isArray(node)) { node.forEach(dropPatterns); return; }
    if (!node || typeof node !== 'object') return;
    if (node.type === 'string' && typeof node.pattern === 'string') delete node.pattern;
    Object.values(node).forEach(dropPatterns);
  })(out);
  return out;
}

function showProblems(result) {
  if (result.ok) {
    statusBox.replaceChildren(el('p', { class: 'ok', id: 'recipe-valid' }, t('recipe.valid') + (result.saved ? ` ${t('recipe.saved')} ${result.saved}` : '')));
  } else {
    statusBox.replaceChildren(el('div', { class: 'error', id: 'recipe-problems' }, el('strong', {}, t('recipe.invalid')),
      el('ul', {}, ...result.problems.map(p => el('li', { class: 'recipe-problem' }, p.message)))));
  }
}

function scheduleValidation() {
  clearTimeout(validateTimer);
  validateTimer = setTimeout(async () => showProblems(await post('/api/recipe/validate', { yaml: yamlBox.value })), 400);
}

function setYaml(text) {
  yamlBox.value = text;
  try {
    const value = jsyaml.load(text) || {};
    fromYaml = true;
    editor.setValue(value);
  } catch (error) { /* the validator reports YAML syntax errors with their line */ }
  finally { setTimeout(() => { fromYaml = false; }, 0); }
  scheduleValidation();
}

async function saveRecipe(launch) {
  try {
    const result = await post('/api/recipe/save', { yaml: yamlBox.value, launch });
    showProblems(result);
    if (result.job) location.href = '/runs/' + result.job;
  } catch (error) { statusBox.replaceChildren(el('p', { class: 'error' }, error.message)); }
}

async function loadTemplate(name) {
  if (!name) { setYaml('name: my-recipe\nbase_model: default\nstages: []\n'); return; }
  const data = await getJSON('/api/recipe/template?name=' + encodeURIComponent(name));
  setYaml(data.yaml);
}

// json-editor's own buttons, in the page's language (its built-in strings are English).
JSONEditor.defaults.languages.zh = {
  button_add: '添加', button_add_row_title: '添加 {{0}}', button_cancel: '取消', button_collapse: '折叠',
  button_expand: '展开', button_copy: '复制', button_copy_row_title: '复制 {{0}}', button_copy_row_title_short: '复制',
  button_delete_all: '全部', button_delete_all_title: '全部删除', button_delete_last: '最后一个 {{0}}',
  button_delete_last_title: '删除最后一个 {{0}}', button_delete_row_title: '删除 {{0}}',
  button_delete_row_title_short: '删除', button_move_down_title: '下移', button_move_up_title: '上移',
  button_delete_node_warning: '确定要删除这一项吗？',
};
if (document.documentElement.lang.startsWith('zh')) JSONEditor.defaults.language = 'zh';

(async () => {
  const schema = forEditor(await getJSON('/api/recipe/schema'));
  editor = new JSONEditor(document.getElementById('recipe-form'), {
    schema, theme: 'html', iconlib: null, disable_edit_json: true, disable_properties: true,
    disable_collapse: false, show_opt_in: true, show_errors: 'never', no_additional_properties: true,
    prompt_before_delete: false, disable_array_delete_last_row: true, disable_array_delete_all_rows: true,
  });
  editor.on('ready', () => loadTemplate(document.getElementById('template').value));
  editor.on('change', () => {
    if (fromYaml) return;
    yamlBox.value = jsyaml.dump(editor.getValue(), { noRefs: true, lineWidth: 120 });
    scheduleValidation();
  });
  yamlBox.addEventListener('input', () => setYaml(yamlBox.value));
  document.getElementById('template').addEventListener('change', event => loadTemplate(event.target.value));
})();
