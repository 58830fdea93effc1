/**
 * Where a model looks: Grad-CAM on any zoo model's stage maps (./gradcam.ts), and Microscopic-Mamba's MIFA gate
 * maps and per-direction scan contributions (./microscopic-mamba.ts), and where a patch of the input shows up in a
 * map (./occlusion.ts: the check behind the H/W transpose warning).
 */
export * from './gradcam';
export * from './microscopic-mamba';
export * from './occlusion';
