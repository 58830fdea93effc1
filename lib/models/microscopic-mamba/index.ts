/** Microscopic-Mamba (arXiv 2409.07896; v2 MambaMIC): the model, its parts and its configuration. */
export * from './config';
export * from './shuffle';
export * from './stem';
export * from './psffn';
export * from './ss2d';
export * from './pvm';
export * from './mifa';
export * from './block';
export * from './taps';
export * from './init';
export * from './model';
export * from './register';
