'use strict';
// Stand-in for the deprecated `request` (see ../README.md): danfojs-node requires it at load time to read URLs.
const { stub } = require('./stub');

module.exports = stub(
  'request',
  'reading URLs through danfojs is not part of microscopic-mamba-ts (request is replaced by a stub: it is ' +
    'deprecated and pulls packages with critical advisories). Download the file first and read it from disk.',
);
