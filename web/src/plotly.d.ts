// The one plotly.js call the page makes (plotly.js-dist ships no types).
declare module 'plotly.js-dist' {
  const Plotly: {
    newPlot(el: HTMLElement, data: object[], layout?: object, config?: object): Promise<unknown>;
  };
  export default Plotly;
}
