/** The kit's PyTorch-like module system: modules, layers, initialisers and safetensors I/O. */
export * from './module';
export * from './layers';
export * from './init';
export * from './safetensors';
export * from './macs';
export * from './pooling';
export * from './dropout';
export * from './batchnorm1d';
export * from './layer-scale';
export * from './attention';
export * from './fold';
