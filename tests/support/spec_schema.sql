CREATE TABLE IF NOT EXISTS instances (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,

    backend_type TEXT NOT NULL CHECK(backend_type IN ('llama_cpp', 'mlx_lm', 'vllm')),
    backend_config_json TEXT NOT NULL,

    status TEXT NOT NULL CHECK(status IN ('stopped', 'running', 'failed', 'restarting', 'shutting_down')) DEFAULT 'stopped',

    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,

    auto_restart INTEGER NOT NULL DEFAULT 0,
    max_restarts INTEGER NOT NULL DEFAULT -1,
    restart_delay INTEGER NOT NULL DEFAULT 0,
    on_demand_start INTEGER NOT NULL DEFAULT 0,
    idle_timeout INTEGER NOT NULL DEFAULT 0,
    docker_enabled INTEGER NOT NULL DEFAULT 0,
    command_override TEXT,

    nodes TEXT,
    environment TEXT,

    owner_user_id TEXT NULL
);

CREATE UNIQUE INDEX IF NOT EXISTS idx_instances_name ON instances(name);
CREATE INDEX IF NOT EXISTS idx_instances_status ON instances(status);
CREATE INDEX IF NOT EXISTS idx_instances_backend_type ON instances(backend_type);
