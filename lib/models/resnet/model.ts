/**
 * ResNet-18 (He et al. 2016, arXiv 1512.03385) as torchvision 0.14 defines it (`torchvision.models.resnet18`,
 * torchvision/models/resnet.py: `BasicBlock` L59–106, `ResNet.__init__` L167–223, `_make_layer` L225–264,
 * `_forward_impl` L266–282), with its state-dict names (`conv1.weight`, `layer2.0.downsample.0.weight`,
 * `fc.bias`, ...).
 *
 * Shapes (NHWC):  b batch   H, W input   C1..C4 stage widths (64, 128, 256, 512)   K classes
 *
 *   imagenet stem: x [b, H, W, 3] → conv1 7×7/2 → bn1 → relu → maxpool 3×3/2 → [b, H/4, W/4, C1]
 *   cifar stem:    x [b, H, W, 3] → conv1 3×3/1 → bn1 → relu              → [b, H, W, C1]
 *     → layer1 (stride 1) → layer2..4 (stride 2 each) → [b, h/8, w/8, C4] (h = the stem's output)
 *     → adaptive average pool → [b, C4] → (dropout) → fc → logits [b, K]
 *
 * `stem: 'cifar'` is the stem of the official repository's `baseline_other/CNN/resnet.py` (commit 8df9997,
 * `ResNet.__init__` L88–99: Conv2d(3, 64, 3, padding=1, bias=False) → BN → ReLU, no max-pool; "we use a
 * different inputsize than the original paper"). The rest of that file's ResNet-18 is torchvision's
 * network under other names (`conv2_x.0.residual_function.0.weight` for `layer1.0.conv1.weight`,
 * `shortcut` for `downsample`, `fc` kept), so the kit keeps torchvision's names for both stems; an
 * official resnet.py checkpoint needs its keys renamed (scripts/fixtures/make-cnn-fixtures.py checks the
 * two definitions agree). Params: 11,689,512 at 1000 classes (cifar stem 11,681,832).
 *
 * Switches beyond torchvision (off by default, so the default is torchvision's function): `dropRate`
 * (dropout before fc) and `dropPathRate` (stochastic depth on each block's residual branch,
 * linspace(0, rate) over blocks, as timm's ResNet does).
 */
import * as tf from '@tensorflow/tfjs';
import {
  AdaptiveAvgPool2d,
  BatchNorm2d,
  Conv2d,
  DropPath,
  Dropout,
  type ForwardContext,
  kaimingNormalFanOut,
  Layer,
  Linear,
  MaxPool2d,
  ReLU,
  Sequential,
} from '../../nn/index';
import { Rng } from '../../util/random';
import { type ClassifierModel, type ModelForwardContext, tapStage } from '../contract';
import { checkImageInput } from '../cnn-input';
import { childPairs, foldedCopy } from '../inference';

export type ResNetStem = 'imagenet' | 'cifar';

export interface ResNetConfig {
  numClasses: number;
  seed: number;
  /** Blocks per stage (resnet18: 2-2-2-2). */
  depths: number[];
  /** Stage widths (torchvision: 64-128-256-512; the stem has widths[0] channels). */
  widths: number[];
  stem: ResNetStem;
  dropRate: number;
  dropPathRate: number;
}

/** torchvision `BasicBlock` (expansion 1): conv3×3(stride) → BN → ReLU → conv3×3 → BN, + shortcut, ReLU. */
export class BasicBlock extends Layer {
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly relu: ReLU;
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm2d;
  /** conv1×1(stride) → BN when the block changes the stride or width (torchvision `_make_layer`). */
  readonly downsample?: Sequential;
  readonly dropPath: DropPath;

  constructor(inPlanes: number, planes: number, stride: number, dropPath: number, rng: Rng) {
    super();
    this.conv1 = this.addModule('conv1', new Conv2d(inPlanes, planes, 3, { stride, padding: 1, bias: false, rng }));
    this.bn1 = this.addModule('bn1', new BatchNorm2d(planes));
    // One ReLU module called twice per block, as torchvision's `self.relu` (ptflops counts both calls).
    this.relu = this.addModule('relu', new ReLU());
    this.conv2 = this.addModule('conv2', new Conv2d(planes, planes, 3, { padding: 1, bias: false, rng }));
    this.bn2 = this.addModule('bn2', new BatchNorm2d(planes));
    if (stride !== 1 || inPlanes !== planes) {
      this.downsample = this.addModule(
        'downsample',
        new Sequential(new Conv2d(inPlanes, planes, 1, { stride, bias: false, rng }), new BatchNorm2d(planes)),
      );
    }
    this.dropPath = this.addModule('drop_path', new DropPath(dropPath));
  }

  forward(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor {
    return tf.tidy(() => {
      let out = this.relu.forward(this.bn1.forward(this.conv1.forward(x), ctx)); // [b, h/s, w/s, planes]
      out = this.bn2.forward(this.conv2.forward(out), ctx); // [b, h/s, w/s, planes]
      const identity = this.downsample ? this.downsample.forward(x, ctx) : x; // [b, h/s, w/s, planes]
      return this.relu.forward(tf.add(this.dropPath.forward(out, ctx), identity));
    });
  }
}

export class ResNet extends Layer implements ClassifierModel {
  /** Set on the copy `fusedForInference` returns (BatchNorm folded: it must not be trained or folded again). */
  isInferenceForm = false;
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly relu: ReLU;
  readonly maxpool?: MaxPool2d;
  readonly stages: Sequential[];
  readonly avgpool: AdaptiveAvgPool2d;
  readonly headDrop: Dropout;
  readonly fc: Linear;
  readonly numClasses: number;
  readonly stageNames: readonly string[];

  constructor(
    readonly config: ResNetConfig,
    readonly name = 'resnet18',
  ) {
    super();
    const cfg = config;
    const rng = new Rng(cfg.seed);
    this.numClasses = cfg.numClasses;
    const c1 = cfg.widths[0];
    this.conv1 = this.addModule(
      'conv1',
      cfg.stem === 'cifar'
        ? new Conv2d(3, c1, 3, { stride: 1, padding: 1, bias: false, rng })
        : new Conv2d(3, c1, 7, { stride: 2, padding: 3, bias: false, rng }),
    );
    this.bn1 = this.addModule('bn1', new BatchNorm2d(c1));
    this.relu = this.addModule('relu', new ReLU());
    if (cfg.stem === 'imagenet') this.maxpool = this.addModule('maxpool', new MaxPool2d(3, { stride: 2, padding: 1 }));
    const total = cfg.depths.reduce((a, b) => a + b, 0);
    let inPlanes = c1;
    let blockIndex = 0;
    this.stages = cfg.depths.map((depth, i) => {
      const blocks = Array.from({ length: depth }, (_, j) => {
        const stride = i > 0 && j === 0 ? 2 : 1;
        const rate = total === 1 ? 0 : (cfg.dropPathRate * blockIndex++) / (total - 1);
        const block = new BasicBlock(inPlanes, cfg.widths[i], stride, rate, rng);
        inPlanes = cfg.widths[i];
        return block;
      });
      return this.addModule(`layer${i + 1}`, new Sequential(...blocks));
    });
    this.avgpool = this.addModule('avgpool', new AdaptiveAvgPool2d(1));
    this.headDrop = this.addModule('head_drop', new Dropout(cfg.dropRate));
    this.fc = this.addModule('fc', new Linear(inPlanes, cfg.numClasses, { rng }));
    this.stageNames = ['stem', ...this.stages.map((_, i) => `layer${i + 1}`)];
    this.initWeights(rng);
  }

  /** torchvision L208–213: conv weights kaiming_normal(fan_out, relu); BN γ 1, β 0 (construction); fc keeps nn.Linear's default. */
  private initWeights(rng: Rng): void {
    for (const [, m] of this.namedModules()) {
      if (m instanceof Conv2d) {
        const w = kaimingNormalFanOut(m.weight.shape, m.fanOut, rng);
        m.weight.assign(w);
        w.dispose();
      }
    }
  }

  forward(x: tf.Tensor, ctx?: ModelForwardContext): tf.Tensor2D {
    return tf.tidy(() => this.forwardHead(this.forwardFeatures(x, ctx), ctx));
  }

  /** x [b, H, W, 3] → layer4's map [b, h/8, w/8, C4] (torchvision `_forward_impl` up to layer4). */
  forwardFeatures(x: tf.Tensor, ctx?: ModelForwardContext): tf.Tensor4D {
    this.checkInput(x.shape, x.dtype);
    const c = ctx ?? { training: this.training };
    return tf.tidy(() => {
      let y = this.relu.forward(this.bn1.forward(this.conv1.forward(x), c)); // [b, H/2, W/2, C1] (cifar: [b, H, W, C1])
      if (this.maxpool) y = this.maxpool.forward(y); // [b, H/4, W/4, C1]
      y = tapStage(c, 'stem', y);
      this.stages.forEach((stage, i) => {
        y = tapStage(c, `layer${i + 1}`, stage.forward(y, c)); // stride 2 from layer2 on, width C(i+1)
      });
      return y as tf.Tensor4D;
    });
  }

  /** features [b, h, w, C4] → avgpool → flatten [b, C4] → (dropout) → fc → logits [b, K]. */
  forwardHead(features: tf.Tensor, ctx?: ModelForwardContext): tf.Tensor2D {
    const c = ctx ?? { training: this.training };
    return tf.tidy(() => {
      const pooled = this.avgpool.forward(features).reshape([features.shape[0], -1]); // [b, C4]
      return this.fc.forward(this.headDrop.forward(pooled, c)) as tf.Tensor2D;
    });
  }

  checkInput(shape: number[], dtype = 'float32'): void {
    const stride = this.config.stem === 'cifar' ? 8 : 32;
    checkImageInput(`${this.name}.forward`, shape, dtype, stride, `the net's total stride is ${stride}`);
  }

  /**
   * The inference form (lib/models/inference.ts): a NEW ResNet in eval mode with every BatchNorm folded
   * into the conv before it (conv1 → bn1, each block's conv1 → bn1 and conv2 → bn2, downsample.0 → .1);
   * in its state dict those BatchNorms are gone and the convs have biases. This model is unchanged.
   */
  fusedForInference(): ResNet {
    return foldedCopy(
      this,
      () => new ResNet(this.config, this.name),
      (copy) => [
        ['conv1', 'bn1'],
        ...childPairs(copy, (m) => m instanceof BasicBlock, ['conv1', 'bn1'], ['conv2', 'bn2']),
      ],
    );
  }
}
