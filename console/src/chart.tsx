import { useEffect, useRef } from 'preact/hooks';
import {
  ArcElement,
  BarController,
  BarElement,
  CategoryScale,
  Chart,
  type ChartConfiguration,
  type ChartType,
  DoughnutController,
  Filler,
  Legend,
  LinearScale,
  LineController,
  LineElement,
  PointElement,
  Tooltip,
} from 'chart.js';

Chart.register(ArcElement, BarController, BarElement, CategoryScale, DoughnutController, Filler, Legend, LinearScale, LineController, LineElement, PointElement, Tooltip);

/**
 * A Chart.js chart. Its numbers are for drawing only: every amount the console shows as text comes
 * from the API's decimal strings. `summary` is what a screen reader hears instead of the picture.
 */
export function ChartView<T extends ChartType>({ config, summary, testId }: { config: ChartConfiguration<T>; summary: string; testId?: string }) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const key = JSON.stringify(config.data);
  useEffect(() => {
    const chart = new Chart(canvas.current!, { ...config, options: { responsive: true, maintainAspectRatio: false, animation: false, ...config.options } } as ChartConfiguration);
    return () => chart.destroy();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key]);
  return (
    <div class="chart" data-test={testId}>
      <canvas ref={canvas} role="img" aria-label={summary} />
    </div>
  );
}
