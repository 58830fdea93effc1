/**
 * Reporting: progress bars, plotly figures (notebook outputs and report.html), and tables
 * (notebook HTML, Markdown for committed results, CSV). See each module's doc.
 */
export * from './progress';
export * from './plot';
export * from './table';
export * from './tslab';
