import { Foundation1764300000000 } from './1764300000000-Foundation';
import { Gateway1764400000000 } from './1764400000000-Gateway';
import { Grading1764500000000 } from './1764500000000-Grading';
import { Commerce1764600000000 } from './1764600000000-Commerce';
import { BatchCalls1764700000000 } from './1764700000000-BatchCalls';
import { PriceWindows1764800000000 } from './1764800000000-PriceWindows';
import { SecretsAtRest1764900000000 } from './1764900000000-SecretsAtRest';
import { CallGuards1765000000000 } from './1765000000000-CallGuards';
import { FairShare1765100000000 } from './1765100000000-FairShare';
import { DirectDeep1765200000000 } from './1765200000000-DirectDeep';
import { BudgetIncidents1765500000000 } from './1765500000000-BudgetIncidents';
import { QualityLabels1765600000000 } from './1765600000000-QualityLabels';
import { Calibrations1765700000000 } from './1765700000000-Calibrations';
import { AssignmentQuality1765800000000 } from './1765800000000-AssignmentQuality';
import { ShadowGrading1765900000000 } from './1765900000000-ShadowGrading';
import { AgreementCells1766000000000 } from './1766000000000-AgreementCells';
import { QualitySignals1766100000000 } from './1766100000000-QualitySignals';
import { LedgerDaily1766200000000 } from './1766200000000-LedgerDaily';
import { TenantKeys1766300000000 } from './1766300000000-TenantKeys';
import { BudgetLeases1766400000000 } from './1766400000000-BudgetLeases';
import { Scheduling1766500000000 } from './1766500000000-Scheduling';
import { LostCalls1766600000000 } from './1766600000000-LostCalls';
import { LeaseKeys1766700000000 } from './1766700000000-LeaseKeys';
import { LedgerDailySchedule1766800000000 } from './1766800000000-LedgerDailySchedule';
import { CacheIndex1766900000000 } from './1766900000000-CacheIndex';
import { LedgerDailyOrder1767000000000 } from './1767000000000-LedgerDailyOrder';
import { LedgerDailyTenantByKey1767100000000 } from './1767100000000-LedgerDailyTenantByKey';
import { LeaseUpdatesInPlace1767200000000 } from './1767200000000-LeaseUpdatesInPlace';
import { LedgerDailyRoom1767300000000 } from './1767300000000-LedgerDailyRoom';
import { EssayErasure1767400000000 } from './1767400000000-EssayErasure';
import { EssayRetention1767500000000 } from './1767500000000-EssayRetention';
import { OrderCancelled1767600000000 } from './1767600000000-OrderCancelled';
import { IdempotencyKeys1767700000000 } from './1767700000000-IdempotencyKeys';
import { BudgetCallRefused1767800000000 } from './1767800000000-BudgetCallRefused';
import { PartialRefunds1767900000000 } from './1767900000000-PartialRefunds';
import { TenantForeignKeys1765300000000 } from './1765300000000-TenantForeignKeys';
import { EssaySignatures1765400000000 } from './1765400000000-EssaySignatures';
import { ConsoleSessionsEnded1768000000000 } from './1768000000000-ConsoleSessionsEnded';
import { BatchedGuards1768100000000 } from './1768100000000-BatchedGuards';
import { UploadedGuards1768200000000 } from './1768200000000-UploadedGuards';
import { ProviderUploads1768300000000 } from './1768300000000-ProviderUploads';
import { LeasedInFlight1768400000000 } from './1768400000000-LeasedInFlight';
import { JobsInBatch1768500000000 } from './1768500000000-JobsInBatch';
import { JobsDeadlineOrder1768600000000 } from './1768600000000-JobsDeadlineOrder';
import { ApiKeysActiveRevoked1768700000000 } from './1768700000000-ApiKeysActiveRevoked';
import { AgreementCellsRebuild1768800000000 } from './1768800000000-AgreementCellsRebuild';
import { AgreementCellsTotalLabelled1768900000000 } from './1768900000000-AgreementCellsTotalLabelled';
import { EssaysOfflineGraded1769000000000 } from './1769000000000-EssaysOfflineGraded';
import { JobsQueuedKindDue1769100000000 } from './1769100000000-JobsQueuedKindDue';
import { EssaysStudentRecent1769300000000 } from './1769300000000-EssaysStudentRecent';
import { TenantZonesKnown1769400000000 } from './1769400000000-TenantZonesKnown';
import { AlertUtilizationUnbounded1769500000000 } from './1769500000000-AlertUtilizationUnbounded';
import { GuardReservations1769200000000 } from './1769200000000-GuardReservations';

/** Every migration, in order. Listed by hand so the app, the CLI and the tests load the same set. */
export const MIGRATIONS = [
  Foundation1764300000000,
  Gateway1764400000000,
  Grading1764500000000,
  Commerce1764600000000,
  BatchCalls1764700000000,
  PriceWindows1764800000000,
  SecretsAtRest1764900000000,
  CallGuards1765000000000,
  FairShare1765100000000,
  DirectDeep1765200000000,
  TenantForeignKeys1765300000000,
  EssaySignatures1765400000000,
  BudgetIncidents1765500000000,
  QualityLabels1765600000000,
  Calibrations1765700000000,
  AssignmentQuality1765800000000,
  ShadowGrading1765900000000,
  AgreementCells1766000000000,
  QualitySignals1766100000000,
  LedgerDaily1766200000000,
  TenantKeys1766300000000,
  BudgetLeases1766400000000,
  Scheduling1766500000000,
  LostCalls1766600000000,
  LeaseKeys1766700000000,
  LedgerDailySchedule1766800000000,
  CacheIndex1766900000000,
  LedgerDailyOrder1767000000000,
  LedgerDailyTenantByKey1767100000000,
  LeaseUpdatesInPlace1767200000000,
  LedgerDailyRoom1767300000000,
  EssayErasure1767400000000,
  EssayRetention1767500000000,
  OrderCancelled1767600000000,
  IdempotencyKeys1767700000000,
  BudgetCallRefused1767800000000,
  PartialRefunds1767900000000,
  ConsoleSessionsEnded1768000000000,
  BatchedGuards1768100000000,
  UploadedGuards1768200000000,
  ProviderUploads1768300000000,
  LeasedInFlight1768400000000,
  JobsInBatch1768500000000,
  JobsDeadlineOrder1768600000000,
  ApiKeysActiveRevoked1768700000000,
  AgreementCellsRebuild1768800000000,
  AgreementCellsTotalLabelled1768900000000,
  EssaysOfflineGraded1769000000000,
  JobsQueuedKindDue1769100000000,
  GuardReservations1769200000000,
  EssaysStudentRecent1769300000000,
  TenantZonesKnown1769400000000,
  AlertUtilizationUnbounded1769500000000,
];
