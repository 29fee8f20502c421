import * as path from 'node:path';
import { DynamicModule, Global, Logger, Module, OnApplicationShutdown } from '@nestjs/common';
import { DataSource, DataSourceOptions } from 'typeorm';
import { AppConfig, CONFIG } from '../config/app-config';
import { ClusterBus } from './cluster-bus';
import { DatabaseMaintenance } from './maintenance';
import { createDataSource, migrate } from './data-source';
import { EmbeddedPostgres, sharesOneSession } from './embedded-postgres';
import { usePreparedStatements } from './tenant-scope';

/**
 * The app's one connection pool, opened at start: to DATABASE_URL when it is set, otherwise to an
 * embedded PostgreSQL that keeps its files under the data directory. Migrations run before the
 * app takes requests.
 */
export class DatabaseConnection implements OnApplicationShutdown {
  private static readonly logger = new Logger('Database');

  /** What must still reach the database when the app stops, run before the pool closes (beforeClose). */
  private readonly lastWrites: Array<() => Promise<void>> = [];

  private constructor(
    readonly dataSource: DataSource,
    readonly embedded?: EmbeddedPostgres,
  ) {}

  /**
   * Runs `fn` before the pool closes when the app stops: Nest stops a module's providers all at
   * once, so the cluster bus's last messages (an essay graded, jobs handed back) would otherwise
   * race the pool's end and be lost.
   */
  beforeClose(fn: () => Promise<void>): void {
    this.lastWrites.push(fn);
  }

  static async open(config: AppConfig, entities: DataSourceOptions['entities'] = []): Promise<DatabaseConnection> {
    let url = config.databaseUrl;
    let embedded: EmbeddedPostgres | undefined;
    if (!url) {
      embedded = await EmbeddedPostgres.start({ dataDir: config.dataDir, maxConnections: config.databasePoolSize + 1 });
      url = embedded.url;
      this.logger.log({
        msg: 'DATABASE_URL is not set: started the embedded PostgreSQL (PGlite)',
        dataDir: path.join(config.dataDir, 'pgdata'),
        listen: embedded.listensOn,
      });
    }
    const ds = createDataSource(url, config.databasePoolSize, entities, {
      idleInTransactionTimeoutMs: config.databaseIdleInTransactionTimeoutMs,
      statementTimeoutMs: config.databaseStatementTimeoutMs,
    });
    try {
      await ds.initialize();
      if (config.databasePreparedStatements && !(await sharesOneSession(ds))) usePreparedStatements(ds);
      const applied = await migrate(ds);
      if (applied.length) this.logger.log({ msg: 'migrations applied', migrations: applied });
    } catch (err) {
      if (ds.isInitialized) await ds.destroy();
      await embedded?.stop();
      throw err;
    }
    return new DatabaseConnection(ds, embedded);
  }

  async ping(): Promise<void> {
    await this.dataSource.query('SELECT 1');
  }

  async onApplicationShutdown(): Promise<void> {
    await Promise.allSettled(this.lastWrites.map((fn) => fn()));
    if (this.dataSource.isInitialized) await this.dataSource.destroy();
    await this.embedded?.stop();
  }
}

@Global()
@Module({})
export class DatabaseModule {
  static forRoot(entities: DataSourceOptions['entities'] = []): DynamicModule {
    return {
      module: DatabaseModule,
      providers: [
        { provide: DatabaseConnection, useFactory: (config: AppConfig) => DatabaseConnection.open(config, entities), inject: [CONFIG] },
        { provide: DataSource, useFactory: (c: DatabaseConnection) => c.dataSource, inject: [DatabaseConnection] },
        {
          provide: ClusterBus,
          useFactory: (config: AppConfig, ds: DataSource, db: DatabaseConnection) => {
            const bus = new ClusterBus(config, ds);
            bus.sendBeforeClosing(db);
            return bus;
          },
          inject: [CONFIG, DataSource, DatabaseConnection],
        },
        DatabaseMaintenance,
      ],
      exports: [DatabaseConnection, DataSource, ClusterBus, DatabaseMaintenance],
    };
  }
}
