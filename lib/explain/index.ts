/**
 * Where a model looks: Grad-CAM on any zoo model's stage maps (./gradcam.ts), and Microscopic-Mamba's MIFA gate
 * maps and per-direction scan contributions (./microscopic-mamba.ts).
 */
export * from './gradcam';
export * from './microscopic-mamba';
