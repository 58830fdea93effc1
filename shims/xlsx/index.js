'use strict';
// Stand-in for SheetJS `xlsx` (see ../README.md): danfojs-node requires it at load time for readExcel/toExcel.
const { stub } = require('./stub');

module.exports = stub(
  'xlsx',
  'Excel I/O is not part of microscopic-mamba-ts (xlsx is replaced by a stub: npm has only 0.18.5, which has ' +
    'high-severity advisories). Export the table as CSV instead.',
);
