/**
 * Datasets for the kit: sources, decoding, transforms, the sample cache, loaders, the synthetic set and
 * downloads. Start with `openDataset` (dataset.ts); data/README.md describes layouts and commands.
 */
export { openDataset, Dataset, PreparedDataset } from './dataset';
export type { DatasetSpec, CommonSpec, DatasetInfo, PrepareOptions } from './dataset';
export { DataLoader } from './loader';
export type { Batch, LoaderOptions, LoaderPosition } from './loader';
export { decodeImage, decodeBmp, sniffImageFormat, IMAGE_EXTENSIONS } from './decode';
export type { RgbImage } from './decode';
export { resizeBilinear } from './resample';
export { modelInputInto } from './model-input';
export type { Crop } from './resample';
export {
  augment,
  flipHorizontal,
  flipVertical,
  rotate90,
  randomResizedCrop,
  randomResizedCropParams,
  roundHalfEven,
  PixelHistogram,
  normalizationTable,
  normalizeInto,
  OFFICIAL_STATS,
  OFFICIAL_TRAIN_AUGMENT,
} from './transforms';
export type { AugmentConfig, ChannelStats, RandomResizedCropOptions } from './transforms';
export { checkTrainingSplits } from './checks';
export type { TrainingSplitChecks } from './checks';
export { DataError } from './errors';
export type { SkippedItem } from './errors';
export { SPLIT_NAMES } from './types';
export type { SampleRef, SplitName, SplitRatios, SplitProvenance } from './types';
export { stratifiedSplit, groupSplit, mixSeed, DEFAULT_RATIOS } from './split';
export { malariaSlideOf, malariaSmearOf, MALARIA_CLASSES } from './sources/malaria';
export { MHIST_CLASSES, MEDFM_COLON_CLASSES, medfmSlideOf, parseCsv } from './sources/tables';
export { parseMedMnistFileName } from './sources/medmnist';
export { MEDMNIST, MEDMNIST_SIZES, MEDMNIST_RECORD_URL } from './medmnist-info';
export type { MedMnistInfo } from './medmnist-info';
export { NpzFile, parseNpyHeader } from './npz';
export { ZipReader, crc32 } from './zip';
export {
  renderSyntheticCell,
  writeSyntheticDataset,
  readSyntheticInfo,
  syntheticFolderName,
  SYNTHETIC_CLASSES,
  SYNTHETIC_DEFAULTS,
} from './synthetic';
export type { SyntheticOptions, SyntheticInfo } from './synthetic';
export { repoRoot, defaultDataRoot, defaultCacheDir, sharedDir, sharedDataDir } from './paths';
export { downloadFile, extractZip, planDownload, runDownload, downloadableNames, MALARIA_ARCHIVE } from './download';
export type { RemoteFile, DownloadOptions, DownloadPlan, DownloadResult } from './download';
