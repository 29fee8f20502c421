import { Body, Controller, Get, HttpCode, Param, Post, Put, Query, RawBodyRequest, Req } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiHeader, ApiOperation, ApiQuery, ApiTags } from '@nestjs/swagger';
import type { FastifyRequest } from 'fastify';
import { Auth, Public, TenantAuth, TenantCaller } from '../common/auth';
import { ApiError } from '../common/errors';
import { ApiView } from '../docs/api-view';
import { BodyLimit, KiB } from '../common/route-config';
import { SIGNATURE_HEADER } from '../common/signature';
import { BillingSettingsDto } from './dto/billing-settings.dto';
import { BillingSettingsView, DeepReviewOffer, OrdersService, OrderView, PaymentWebhookAnswer } from './orders.service';
import { BoundedRead } from '../tenancy/read-slot.interceptor';
import { AuthFailures } from '../tenancy/auth-failures';
import { BillingError } from './billing-errors';
import { TenantSecretsService } from './tenant-secrets.service';

/** The bucket of an address's payment events to ids of no school with a payment secret (AuthFailures scope). */
const UNKNOWN_SCHOOLS = 'payments:unknown';

/** GET /v1/orders: a page, newest first; `nextCursor` (null on the last page) asks for the next. */
export interface OrderList {
  data: OrderView[];
  nextCursor: string | null;
}

const ORDER_STATUSES = ['awaiting_payment', 'paid', 'delivered', 'refunded', 'cancelled'];

@ApiTags('billing')
@ApiBearerAuth()
@Controller('v1')
export class OrdersController {
  constructor(private readonly orders: OrdersService) {}

  @Get('billing/settings')
  @Auth('admin')
  @ApiOperation({ summary: 'Deep-review price and payment mode (the webhook secret is never shown)' })
  @ApiView('BillingSettingsView')
  settings(@TenantCaller() auth: TenantAuth): Promise<BillingSettingsView> {
    return this.orders.settings(auth.tenantId);
  }

  @Get('billing/offer')
  @Auth('admin', 'teacher')
  @ApiOperation({ summary: 'Whether deep reviews are on sale at this school, their price and how they are paid: what a teacher sees before ordering one' })
  @ApiView('DeepReviewOffer')
  offer(@TenantCaller() auth: TenantAuth): Promise<DeepReviewOffer> {
    return this.orders.offer(auth.tenantId);
  }

  @Put('billing/settings')
  @Auth('admin')
  @ApiOperation({ summary: 'Set the deep-review price, the payment mode and the webhook secret' })
  @ApiView('BillingSettingsView')
  updateSettings(@TenantCaller() auth: TenantAuth, @Body() dto: BillingSettingsDto): Promise<BillingSettingsView> {
    return this.orders.updateSettings(auth, dto);
  }

  @Get('orders')
  @Auth('admin', 'teacher')
  @BoundedRead()
  @ApiQuery({ name: 'status', required: false, enum: ORDER_STATUSES })
  @ApiQuery({ name: 'limit', required: false, type: Number, minimum: 1, maximum: 500, description: '1-500, default 500' })
  @ApiQuery({ name: 'cursor', required: false, description: 'nextCursor of the previous page' })
  @ApiOperation({ summary: 'Deep-review orders, newest first, with cursor pagination' })
  @ApiView('OrderList')
  list(@TenantCaller() auth: TenantAuth, @Query('status') status?: string, @Query('limit') limit?: string, @Query('cursor') cursor?: string): Promise<OrderList> {
    if (status !== undefined && !ORDER_STATUSES.includes(status)) {
      throw ApiError.validation([{ field: 'status', message: `status must be one of ${ORDER_STATUSES.join(', ')}` }]);
    }
    return this.orders.list(auth, { status, limit, cursor });
  }

  @Get('orders/:id')
  @Auth('admin', 'teacher')
  @ApiOperation({ summary: 'One deep-review order' })
  @ApiView('OrderView')
  get(@TenantCaller() auth: TenantAuth, @Param('id') id: string): Promise<OrderView> {
    return this.orders.get(auth.tenantId, id);
  }
}

/** The payment provider's calls: no key (the tenant's webhook secret signs them), so a controller of their own, without the bearer scheme. */
@ApiTags('billing')
@Controller('v1')
export class PaymentsWebhookController {
  constructor(
    private readonly orders: OrdersService,
    private readonly failures: AuthFailures,
    private readonly secrets: TenantSecretsService,
  ) {}

  /**
   * A refused signature counts as a failed authentication of the sender's address (AuthFailures,
   * apart from the keys'): for a school with a payment secret in a bucket of that school's (one
   * school's wrong secret must not refuse other schools' events from the same payment provider),
   * for any other id in one bucket of the address's (random ids would each get a bucket of their
   * own), which a school known to have a payment secret (TenantSecretsService) is not held to.
   * Past either burst, events are answered 429 before any secret is read (each forged event cost a
   * database read, without end).
   */
  @Post('payments/webhook/:tenantId')
  @BodyLimit(64 * KiB)
  @HttpCode(200)
  @Public()
  @ApiHeader({ name: SIGNATURE_HEADER, required: true, description: 't=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>"> with the tenant\'s webhook secret' })
  @ApiBody({ schema: { $ref: '#/components/schemas/PaymentEvent' } })
  @ApiOperation({ summary: 'Payment provider events (payment.succeeded, payment.refunded), signed with the tenant webhook secret' })
  @ApiView('PaymentWebhookAnswer')
  async webhook(@Param('tenantId') tenantId: string, @Req() req: RawBodyRequest<FastifyRequest>): Promise<PaymentWebhookAnswer> {
    const id = tenantId.toLowerCase();
    const school = `payments:${id}`;
    // A school known to have a secret is held to its own bucket only: the address's bucket of unknown
    // ids (a school's provider naming no school, retried for days) must not refuse its events.
    const refused = (this.secrets.knownPaymentSchool(id) ? undefined : this.failures.refusal(req.ip, Date.now(), UNKNOWN_SCHOOLS)) ?? this.failures.refusal(req.ip, Date.now(), school);
    if (refused) throw refused;
    const header = req.headers[SIGNATURE_HEADER];
    try {
      return await this.orders.handleWebhook(tenantId, req.rawBody, Array.isArray(header) ? header[0] : header);
    } catch (err) {
      if (err instanceof BillingError && err.code === 'INVALID_SIGNATURE') this.failures.failed(req.ip, Date.now(), err.secretFound ? school : UNKNOWN_SCHOOLS);
      throw err;
    }
  }
}
