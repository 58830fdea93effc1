/**
 * Kernels written with tf ops ("composite" kernels): tfjs calls a kernel with tensors; the body runs
 * ordinary tf ops inside `tf.tidy` (ops inside a kernel are not recorded on the gradient tape), and the
 * result's storage is handed to the kernel's output the way tfjs' own Identity kernel does it (incRef,
 * then dispose). Used by ./conv-gradients.ts and ./matmul.ts for kernels built from XNNPACK-backed ops.
 */
import * as tf from '@tensorflow/tfjs';

export type Attrs = Record<string, unknown>;
export type Body = (inputs: Record<string, tf.Tensor>, attrs: Attrs) => tf.Tensor;

interface RefCountingBackend {
  incRef(dataId: object): void;
}

/** Kernel whose body is written with tf ops; the result's storage becomes the kernel output. */
export function compositeKernelFunc(body: Body): tf.KernelFunc {
  return ({ inputs, attrs, backend }) => {
    const be = backend as unknown as RefCountingBackend;
    const given = new Set<tf.Tensor>();
    const out = tf.tidy(() => {
      const tensors: Record<string, tf.Tensor> = {};
      for (const [name, info] of Object.entries(inputs)) {
        if (info == null) continue;
        if (info instanceof tf.Tensor) {
          tensors[name] = info;
          given.add(info);
        } else {
          // A bare TensorInfo (a kernel called from another kernel): wrap it; tidy's dispose undoes the incRef.
          be.incRef(info.dataId);
          tensors[name] = tf.engine().makeTensorFromTensorInfo(info);
        }
      }
      return body(tensors, (attrs ?? {}) as Attrs);
    });
    be.incRef(out.dataId);
    if (!given.has(out)) out.dispose(); // (a body returning its input as is must not dispose the caller's tensor)
    return { dataId: out.dataId, shape: out.shape, dtype: out.dtype };
  };
}
