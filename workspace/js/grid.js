// Keyboard navigation of a data grid (WAI-ARIA Authoring Practices, "Data Grid"): the grid is one tab stop;
// arrow keys move between cells, Home/End to the row's ends, Ctrl+Home/End to the grid's corners,
// PageUp/PageDown by five rows, and Enter opens the row (its first link).
export function makeGrid(table, { label } = {}) {
  table.setAttribute("role", "grid");
  if (label) table.setAttribute("aria-label", label);
  const cells = () => [...table.querySelectorAll("tr")].map((tr) => [...tr.children]);
  let position = { row: 1, col: 0 };

  function activate(row, col, focus = true) {
    const grid = cells();
    if (!grid.length) return;
    row = Math.max(0, Math.min(row, grid.length - 1));
    col = Math.max(0, Math.min(col, grid[row].length - 1));
    for (const cell of table.querySelectorAll("[tabindex='0']")) cell.setAttribute("tabindex", "-1");
    const cell = grid[row][col];
    cell.setAttribute("tabindex", "0");
    position = { row, col };
    if (focus) cell.focus();
  }

  function setup() {
    for (const cell of table.querySelectorAll("th, td")) cell.setAttribute("tabindex", "-1");
    for (const inner of table.querySelectorAll("a, button, input")) inner.setAttribute("tabindex", "-1");
    const grid = cells();
    const row = Math.min(position.row, grid.length - 1);
    activate(grid.length > 1 ? Math.max(1, row) : 0, position.col, false);
  }

  table.addEventListener("keydown", (event) => {
    const cell = event.target.closest("th, td");
    if (!cell || !table.contains(cell)) return;
    const grid = cells();
    const row = grid.findIndex((r) => r.includes(cell));
    const col = grid[row].indexOf(cell);
    const moves = {
      ArrowRight: [row, col + 1],
      ArrowLeft: [row, col - 1],
      ArrowDown: [row + 1, col],
      ArrowUp: [row - 1, col],
      Home: event.ctrlKey ? [0, 0] : [row, 0],
      End: event.ctrlKey ? [grid.length - 1, grid[grid.length - 1].length - 1] : [row, grid[row].length - 1],
      PageDown: [row + 5, col],
      PageUp: [row - 5, col],
    };
    if (moves[event.key]) {
      event.preventDefault();
      activate(...moves[event.key]);
    } else if (event.key === "Enter" || event.key === " ") {
      const link = cell.querySelector("a[href]") || cell.parentElement.querySelector("a[href]");
      if (link) {
        event.preventDefault();
        link.click();
      }
    }
  });
  table.addEventListener("click", (event) => {
    const cell = event.target.closest("th, td");
    if (!cell) return;
    const grid = cells();
    const row = grid.findIndex((r) => r.includes(cell));
    activate(row, grid[row].indexOf(cell), !event.target.closest("a"));
  });

  setup();
  return {
    refresh: setup,
    hasFocus: () => table.contains(document.activeElement),
    focusActive: () => activate(position.row, position.col),
  };
}
