/**
 * Training and evaluation (docs/architecture.md §Training recipe): the official recipe and a CPU recipe, Adam/AdamW
 * with exact state, the official LR schedule, checkpoints that resume exactly, logs, reports, evaluation and
 * prediction.
 *
 *   trainRun(makeTrainConfig({ recipe: 'cpu', data: 'synthetic' }))   a whole run, as `npm run train`
 *   fit({ model, train, val, config, runDir })                          the loop, on any EpochSource
 *   new Trainer(model, optimizer, opts).trainStep(batch, step)          one optimizer step
 *   loadRun('runs/x') → prepareInference → evaluateSplit / predictImages  use trained weights (inference form)
 *   planMemory / planForRun                                             fit a step into the backend's memory
 */
export * from './config';
export * from './schedule';
export * from './optim';
export * from './loss';
export * from './early-stopping';
export * from './trainer';
export * from './checkpoint';
export * from './logs';
export * from './fit';
export * from './report';
export * from './run';
export * from './memory';
export * from './evaluate';
