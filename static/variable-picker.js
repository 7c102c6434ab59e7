// The variable picker of template editors: inserts "{{ name }}" at the cursor of the field
// last focused (the body by default), by the button or by Enter on the picker.
(function () {
  var lastField = null;
  document.addEventListener('focusin', function (event) {
    if (event.target.matches && event.target.matches('[data-template]')) {
      lastField = event.target;
    }
  });
  function insert() {
    var picker = document.querySelector('[data-picker]');
    var field = lastField || document.querySelector('textarea[data-template]');
    if (!picker || !field) { return; }
    var text = '{{ ' + picker.value + ' }}';
    var start = field.selectionStart == null ? field.value.length : field.selectionStart;
    var end = field.selectionEnd == null ? start : field.selectionEnd;
    field.value = field.value.slice(0, start) + text + field.value.slice(end);
    field.focus();
    field.setSelectionRange(start + text.length, start + text.length);
    // The live preview follows.
    field.dispatchEvent(new Event('input', { bubbles: true }));
  }
  document.addEventListener('click', function (event) {
    if (event.target.matches && event.target.matches('[data-insert-variable]')) {
      insert();
    }
  });
  document.addEventListener('keydown', function (event) {
    if (event.key === 'Enter' && event.target.matches && event.target.matches('[data-picker]')) {
      event.preventDefault();
      insert();
    }
  });
})();
