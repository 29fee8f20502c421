import { Inject, Injectable, Logger } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { AppConfig, CONFIG } from '../config/app-config';
import { formatCny, parseCny } from '../common/money';
import { ApiError } from '../common/errors';
import { canonicalTimeZone } from '../common/time-zone';
import { ApiKeysService } from './api-keys.service';
import { CreateTenantDto } from './dto/create-tenant.dto';
import { TenantEntity } from './tenant.entity';
import { TenantsRepository } from './tenants.repository';

export interface TenantView {
  id: string;
  name: string;
  timezone: string;
  monthlyBudget: string;
  createdAt: string;
}

export interface CreatedTenant {
  tenant: TenantView;
  /** The first admin key, shown this once. */
  adminKey: string;
  adminKeyId: string;
}

@Injectable()
export class TenantsService {
  private readonly logger = new Logger(TenantsService.name);

  constructor(
    private readonly ds: DataSource,
    private readonly tenants: TenantsRepository,
    private readonly apiKeys: ApiKeysService,
    @Inject(CONFIG) private readonly config: AppConfig,
  ) {}

  /** Creates a tenant and its first admin key in one transaction. */
  async create(dto: CreateTenantDto): Promise<CreatedTenant> {
    const timezone = canonicalTimeZone(dto.timezone ?? this.config.defaultTimezone);
    if (!(await this.tenants.databaseKnowsZone(timezone))) {
      throw ApiError.validation([{ field: 'timezone', message: `timezone "${timezone}" is not known to the database; name the zone by its current IANA name` }]);
    }
    return this.ds.transaction(async (m) => {
      const tenant = await this.tenants.create(m, {
        name: dto.name,
        timezone,
        cap: dto.monthlyBudget !== undefined ? parseCny(dto.monthlyBudget) : this.config.defaultMonthlyBudget,
      });
      const key = await this.apiKeys.issue(m, tenant.id, 'Initial admin key', 'admin');
      this.logger.log({ msg: 'tenant created', tenantId: tenant.id });
      return { tenant: toTenantView(tenant), adminKey: key.key, adminKeyId: key.id };
    });
  }
}

export function toTenantView(t: TenantEntity): TenantView {
  return {
    id: t.id,
    name: t.name,
    timezone: t.timezone,
    monthlyBudget: formatCny(t.monthlyCapNanos),
    createdAt: t.createdAt.toISOString(),
  };
}
