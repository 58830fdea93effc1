/** The kit's public API: `import { initBackend, createModel, ... } from '<kit>/lib'`. */
export * from './backend/index';
export * from './util/random';
export * from './nn/index';
export * from './models/index';
