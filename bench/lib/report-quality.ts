/** The quality section of BENCHMARKS.md, from bench/quality.ts's result. */
export function renderQuality(q: any): string {
  const row = (what: string, a: any, spearman = a.spearman) =>
    `| ${what} | ${spearman ?? '—'} | ${a.qwk ?? '—'} | ${a.exact ?? '—'} | ${a.adjacent ?? '—'} | ${a.bias ?? '—'} |`;
  const top = q.weights.slice(0, 5).map((w: any) => `${w.feature} (${w.weight > 0 ? '+' : ''}${w.weight})`).join(', ');
  return `## Agreement with teachers: the offline grader (\`npm run bench:quality\`)

${q.essays} essays of ${q.data}, graded by the offline grader in process (no model) on
\`${q.rubric}\`, its total scaled to 100; QWK, exact and adjacent on the teachers' 100-point scale (adjacent:
within 10 points), bias = grader − teacher in points. "Calibrated" rows are ${q.folds}-fold
cross-validated: each essay is scored by a calibration fitted on the other folds, never on itself.
The baseline every grader must beat is the essay's length alone.${q.commit ? ` Commit \`${q.commit}\`, ${q.date}.` : ''}

| | Spearman | QWK | exact | adjacent | bias |
|---|---|---|---|---|---|
${row('length alone (rank only)', { spearman: q.lengthBaseline.spearman })}
${row('length alone, calibrated (isotonic)', q.lengthBaseline.calibrated)}
${row('offline grader, uncalibrated', q.uncalibrated)}
${row('offline grader, calibrated (isotonic on its total)', q.isotonic)}
${row(`offline grader, calibrated (ridge over its features, λ = ${q.ridge.lambda}, spread to the teachers')`, q.ridge)}

The features that weigh most in the ridge fitted on all essays (points per standard deviation): ${top}.
${q.msPerEssay} ms per essay. On this set the teachers' scores are bunched (mean about 83, most between
80 and 90) and only weakly related to anything measurable in the text (length: Spearman
${q.lengthBaseline.spearman}); the set's own README calls agreement figures on it indicative. The
uncalibrated grader ranks essays better than length alone; no calibration reaches the QWK ≈ 0.7 of
published feature-based scorers here.
`;
}
