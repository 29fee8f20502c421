import { useEffect, useState } from 'preact/hooks';
import { api, ok } from '../api/client';
import { useApp } from '../app-context';
import { readThresholds, thresholdsToText } from '../thresholds';
import { Field, Loading, Outcome, Section, useAction, useLoad } from '../ui';

/** Budget policy and alerts, billing, grading policy. */
export function SettingsPage() {
  const { t } = useApp();
  return (
    <>
      <h1>{t('navSettings')}</h1>
      <BudgetPolicy />
      <Billing />
      <Grading />
    </>
  );
}

function BudgetPolicy() {
  const { t } = useApp();
  const budget = useLoad(() => ok(api.GET('/v1/budget')), []);
  const [cap, setCap] = useState('');
  const [when, setWhen] = useState<'offline' | 'reject'>('offline');
  const [thresholds, setThresholds] = useState('');
  const [webhook, setWebhook] = useState('');
  const [webhookSecret, setWebhookSecret] = useState('');
  // A save refused for the thresholds as typed: their problem is told as an alert (in the page's language) until they change.
  const [refused, setRefused] = useState(false);
  // The form shows once its fields hold the loaded values, so nothing typed is overwritten by them;
  // they are filled once: the reload after a save refreshes the view, not what is being typed.
  const [filled, setFilled] = useState(false);
  const action = useAction();
  useEffect(() => {
    if (!budget.data || filled) return;
    setCap(budget.data.monthlyCap);
    setWhen(budget.data.whenExhausted);
    setThresholds(thresholdsToText(budget.data.alertThresholds));
    setWebhook(budget.data.alertWebhookUrl ?? '');
    setFilled(true);
  }, [budget.data]);
  if (!budget.data || !filled) return <Loading error={budget.error} />;
  // Percentages of the cap, as typed; what will be saved is shown under the field as it is typed.
  const read = readThresholds(thresholds);
  const readWords = read.ok
    ? read.percents.length
      ? t('thresholdsPreview', { list: read.percents.map((p) => `${p}%`).join(t('listComma')) })
      : t('thresholdsNone')
    : t(read.problem, read.vars);
  const save = (e: Event) => {
    e.preventDefault();
    if (!read.ok) {
      action.clear(); // an earlier save's "Saved" is not this one's
      setRefused(true);
      (e.currentTarget as HTMLFormElement).querySelector<HTMLInputElement>('input[name=alertThresholds]')?.focus();
      return;
    }
    const alertThresholds = read.fractions;
    void action.run(async () => {
      await ok(
        api.PUT('/v1/budget', {
          body: {
            monthlyCap: cap.trim(),
            whenExhausted: when,
            alertThresholds,
            alertWebhookUrl: webhook.trim() || null,
            ...(webhookSecret ? { alertWebhookSecret: webhookSecret } : {}),
          },
        }),
      );
      setWebhookSecret('');
      budget.reload();
      return t('saved');
    });
  };
  return (
    <Section title={t('budgetPolicy')} id="budget-policy">
      <form onSubmit={save} class="stack" data-test="budget-form">
        <Field label={t('monthlyCap')}>
          <input name="monthlyCap" inputMode="decimal" required pattern="\d+(\.\d{1,9})?" value={cap} onInput={(e) => setCap(e.currentTarget.value)} />
        </Field>
        <Field label={t('whenExhausted')}>
          <select name="whenExhausted" value={when} onChange={(e) => setWhen(e.currentTarget.value as 'offline' | 'reject')}>
            <option value="offline">{t('whenExhausted_offline')}</option>
            <option value="reject">{t('whenExhausted_reject')}</option>
          </select>
        </Field>
        <Field label={t('alertThresholds')}>
          <input
            name="alertThresholds"
            inputMode="decimal"
            value={thresholds}
            aria-invalid={!read.ok}
            aria-describedby="thresholds-read"
            onInput={(e) => (setThresholds(e.currentTarget.value), setRefused(false))}
          />
          <small id="thresholds-read" class={read.ok ? undefined : 'error'} data-test="thresholds-read" role={refused && !read.ok ? 'alert' : undefined} aria-live="polite">
            {readWords}
          </small>
        </Field>
        <Field label={t('alertWebhookUrl')}>
          <input name="alertWebhookUrl" type="url" value={webhook} onInput={(e) => setWebhook(e.currentTarget.value)} />
        </Field>
        <Field label={t('webhookSecret')}>
          <input name="alertWebhookSecret" type="password" autocomplete="off" minLength={16} value={webhookSecret} onInput={(e) => setWebhookSecret(e.currentTarget.value)} />
        </Field>
        <button type="submit" disabled={action.busy}>
          {t('save')}
        </button>
        <Outcome message={action.message} failed={action.failed} />
      </form>
    </Section>
  );
}

function Billing() {
  const { t } = useApp();
  const settings = useLoad(() => ok(api.GET('/v1/billing/settings')), []);
  const [price, setPrice] = useState('');
  const [mode, setMode] = useState<'invoice' | 'webhook'>('invoice');
  const [secret, setSecret] = useState('');
  const [filled, setFilled] = useState(false);
  const action = useAction();
  useEffect(() => {
    if (!settings.data || filled) return; // filled once, as the budget form's fields
    setPrice(settings.data.deepReviewPrice ?? '');
    setMode(settings.data.paymentMode ?? 'invoice');
    setFilled(true);
  }, [settings.data]);
  if (!settings.data || !filled) return <Loading error={settings.error} />;
  const save = (e: Event) => {
    e.preventDefault();
    void action.run(async () => {
      await ok(api.PUT('/v1/billing/settings', { body: { deepReviewPrice: price.trim(), paymentMode: mode, ...(secret ? { webhookSecret: secret } : {}) } }));
      setSecret('');
      settings.reload();
      return t('saved');
    });
  };
  return (
    <Section title={t('billingSettings')} id="billing">
      <form onSubmit={save} class="stack">
        <Field label={t('deepReviewPrice')}>
          <input name="deepReviewPrice" inputMode="decimal" required value={price} onInput={(e) => setPrice(e.currentTarget.value)} />
        </Field>
        <Field label={t('paymentMode')}>
          <select name="paymentMode" value={mode} onChange={(e) => setMode(e.currentTarget.value as 'invoice' | 'webhook')}>
            <option value="invoice">{t('paymentMode_invoice')}</option>
            <option value="webhook">{t('paymentMode_webhook')}</option>
          </select>
        </Field>
        {mode === 'webhook' && (
          <Field label={t('webhookSecret')}>
            <input name="webhookSecret" type="password" autocomplete="off" value={secret} onInput={(e) => setSecret(e.currentTarget.value)} />
          </Field>
        )}
        <button type="submit" disabled={action.busy}>
          {t('save')}
        </button>
        <Outcome message={action.message} failed={action.failed} />
      </form>
    </Section>
  );
}

function Grading() {
  const { t } = useApp();
  const settings = useLoad(() => ok(api.GET('/v1/grading/settings')), []);
  const [form, setForm] = useState<{ nearDuplicateThreshold: string; reuseResubmissionGrades: boolean; directDeep: boolean; shadowRate: string; essayRetentionDays: string } | null>(null);
  const action = useAction();
  useEffect(() => {
    const s = settings.data;
    // Filled once, as the budget form's fields: a reload after a save does not overwrite what is typed since.
    if (s)
      setForm((f) => f ?? {
        nearDuplicateThreshold: String(s.nearDuplicateThreshold),
        reuseResubmissionGrades: s.reuseResubmissionGrades,
        directDeep: s.directDeep,
        shadowRate: String(s.shadowRate),
        essayRetentionDays: s.essayRetentionDays === null ? '' : String(s.essayRetentionDays),
      });
  }, [settings.data]);
  if (!settings.data || !form) return <Loading error={settings.error} />;
  const save = (e: Event) => {
    e.preventDefault();
    void action.run(async () => {
      await ok(
        api.PUT('/v1/grading/settings', {
          body: {
            nearDuplicateThreshold: Number(form.nearDuplicateThreshold),
            reuseResubmissionGrades: form.reuseResubmissionGrades,
            directDeep: form.directDeep,
            shadowRate: Number(form.shadowRate),
            // empty: keep essays until erased
            essayRetentionDays: form.essayRetentionDays.trim() === '' ? null : Number(form.essayRetentionDays),
          },
        }),
      );
      settings.reload();
      return t('saved');
    });
  };
  return (
    <Section title={t('gradingSettings')} id="grading-settings">
      <form onSubmit={save} class="stack">
        <Field label={t('nearDuplicateThresholdLabel')}>
          <input name="nearDuplicateThreshold" type="number" required min={0.05} max={1} step="0.01" value={form.nearDuplicateThreshold} onInput={(e) => setForm({ ...form, nearDuplicateThreshold: e.currentTarget.value })} />
        </Field>
        <Field label={t('shadowRateLabel')}>
          <input name="shadowRate" type="number" required min={0} max={0.2} step="0.01" value={form.shadowRate} onInput={(e) => setForm({ ...form, shadowRate: e.currentTarget.value })} />
        </Field>
        <Field label={t('essayRetentionDaysLabel')}>
          <input name="essayRetentionDays" type="number" min={1} max={3650} step="1" value={form.essayRetentionDays} onInput={(e) => setForm({ ...form, essayRetentionDays: e.currentTarget.value })} />
        </Field>
        <label class="check">
          <input type="checkbox" name="reuseResubmissionGrades" checked={form.reuseResubmissionGrades} onChange={(e) => setForm({ ...form, reuseResubmissionGrades: e.currentTarget.checked })} /> {t('reuseResubmissionGradesLabel')}
        </label>
        <label class="check">
          <input type="checkbox" name="directDeep" checked={form.directDeep} onChange={(e) => setForm({ ...form, directDeep: e.currentTarget.checked })} /> {t('directDeepLabel')}
        </label>
        <button type="submit" disabled={action.busy}>
          {t('save')}
        </button>
        <Outcome message={action.message} failed={action.failed} />
      </form>
    </Section>
  );
}
