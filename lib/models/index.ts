/**
 * The kit's models: the contract, the registry, weight I/O, complexity counts, and every model folder.
 * Import models through this file (or lib/index.ts): each folder's index.ts registers its models here.
 */
export * from './contract';
export * from './registry';
export * from './weights';
export * from './complexity';
export * from './microscopic-mamba/index';
export * from './checkpoint';
import './resnet/index';
import './convnext/index';
import './mobileone/index';
import './repvit/index';
import './swiftformer/index';
import './vit/index';
import './medmamba/index';
export * from './inference';
