// Time series drawn by uPlot (lines or bars). The numbers it draws are also exposed on
// the element (`data-series`), and every screen shows them as a table beneath.

import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";

export interface Line {
  label: string;
  values: (number | null)[];
}

const COLOURS = ["#3b6fd8", "#d8713b", "#2f9e6e", "#b53bd8", "#c9a227", "#d83b5e", "#3bb8d8", "#6b6b6b"];

export function colour(i: number): string {
  return COLOURS[i % COLOURS.length];
}

/**
 * `onPick(line, bucket)` is called when a point is clicked: the bucket under the cursor
 * and the line whose value there is nearest to it.
 */
export function TimeChart(props: {
  buckets: string[];
  lines: Line[];
  bars?: boolean;
  height?: number;
  onPick?: (line: number, bucket: number) => void;
}) {
  const host = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = host.current;
    if (!el) return;
    const xs = props.buckets.map((b) => Date.parse(b) / 1000);
    const data: uPlot.AlignedData = [xs, ...props.lines.map((l) => l.values)];
    const bars = props.bars ? uPlot.paths.bars!({ size: [0.7, 60] }) : undefined;
    const plot = new uPlot(
      {
        width: Math.max(el.clientWidth, 300),
        height: props.height ?? 260,
        legend: { show: true },
        scales: { x: { time: true } },
        series: [
          {},
          ...props.lines.map((l, i) => ({
            label: l.label,
            stroke: colour(i),
            fill: props.bars ? colour(i) + "cc" : undefined,
            width: 2,
            paths: bars,
          })),
        ],
        axes: [{}, { size: 60 }],
      },
      data,
      el,
    );
    const pick = () => {
      const at = plot.cursor.idx;
      const top = plot.cursor.top;
      if (!props.onPick || at === null || at === undefined || top === undefined || top < 0) return;
      const y = plot.posToVal(top, "y");
      let best = -1;
      props.lines.forEach((l, i) => {
        const v = l.values[at];
        if (v !== null && (best < 0 || Math.abs(v - y) < Math.abs((props.lines[best].values[at] ?? 0) - y))) best = i;
      });
      if (best >= 0) props.onPick(best, at);
    };
    plot.over.addEventListener("click", pick);
    const resize = () => plot.setSize({ width: Math.max(el.clientWidth, 300), height: props.height ?? 260 });
    addEventListener("resize", resize);
    return () => {
      removeEventListener("resize", resize);
      plot.destroy();
    };
  }, [props.buckets, props.lines, props.bars, props.height, props.onPick]);
  return (
    <div
      ref={host}
      role="img"
      aria-label={props.lines.map((l) => l.label).join(", ")}
      class={props.onPick ? "chart pickable" : "chart"}
      title={props.onPick ? "Click a point to list its persons" : undefined}
      data-series={JSON.stringify(props.lines.map((l) => ({ label: l.label, values: l.values })))}
    />
  );
}
