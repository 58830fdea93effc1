/** The kit's public API: `import { initBackend, createModel, ... } from '<kit>/lib'`. */
export * from './backend';
export * from './util/random';
export * from './nn';
export * from './models';
