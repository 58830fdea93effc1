/** The kit's models: the registry, weight I/O, complexity counts and Microscopic-Mamba itself. */
export * from './registry';
export * from './weights';
export * from './complexity';
export * from './microscopic-mamba/index';
export * from './checkpoint';
import './vit/index';
import './medmamba/index';
