'use strict';
/**
 * A module whose every property is a function that throws `message` when called (nested: `x.utils.f()`),
 * so a package that `require`s it at load time still loads. Shared by the stubs in this folder.
 */
function stub(path, message) {
  return new Proxy(function () {}, {
    get(_target, key) {
      // Not a promise, not an ES module namespace, no primitive conversion: plain CommonJS.
      if (typeof key === 'symbol' || key === 'then' || key === '__esModule') return undefined;
      return stub(`${path}.${key}`, message);
    },
    apply() {
      throw new Error(`${path}(): ${message}`);
    },
    construct() {
      throw new Error(`new ${path}(): ${message}`);
    },
  });
}

module.exports = { stub };
