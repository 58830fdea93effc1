/**
 * Studies: arms (model + options) × seeds, each cell an ordinary run folder, run locally or on Slurm, and
 * aggregated into mean ± sd, 95 % intervals and paired comparisons (README §Studies).
 */
export * from './definition';
export * from './stats';
export * from './cell';
export * from './aggregate';
export * from './figures';
export * from './paper-table1';
export * from './frame';
export * from './size-effect';
export * from './local';
export * from './estimate';
export * from './probe';
export * from './slurm';
