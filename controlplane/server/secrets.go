package server

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/toktra/toktra/controlplane/api"
	"github.com/toktra/toktra/controlplane/pipeline"
	"github.com/toktra/toktra/controlplane/providers"
	"github.com/toktra/toktra/controlplane/providers/connect"
	"github.com/toktra/toktra/controlplane/secrets"
	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/internal/clock"
)

// openSealer sets up envelope encryption of secrets at rest: data keys
// wrapped by AWS KMS when a KMS key is configured, else by a local key file
// in the data dir. The local key stays readable after a move to KMS, so
// secrets sealed before it still open.
func openSealer(ctx context.Context, cfg Config) (*secrets.Sealer, error) {
	local, err := secrets.LoadOrCreateLocalKEK(filepath.Join(cfg.DataDir, "secrets"))
	if err != nil {
		return nil, fmt.Errorf("loading the local key-encryption key: %w", err)
	}
	if cfg.KMSKeyID == "" {
		return secrets.NewSealer(local), nil
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading AWS configuration for KMS: %w", err)
	}
	kek, err := secrets.NewKMSKEK(kms.NewFromConfig(awsCfg), cfg.KMSKeyID)
	if err != nil {
		return nil, err
	}
	return secrets.NewSealer(secrets.NewKeyring(kek, local)), nil
}

// providerOptions are what every provider connector is built with.
func providerOptions(log *slog.Logger, clk clock.Clock) providers.Options {
	return providers.Options{Logger: log.With("component", "providers"), Clock: clk}
}

// providerConnector opens an org's sealed admin key and builds its connector.
func providerConnector(sealer *secrets.Sealer, opts providers.Options) func(ctx context.Context, c store.ProviderConnection) (pipeline.Connector, error) {
	return func(ctx context.Context, c store.ProviderConnection) (pipeline.Connector, error) {
		key, err := sealer.Open(ctx, c.SealedKey, api.ProviderKeyAAD(c.OrgID, c.Provider))
		if err != nil {
			return nil, fmt.Errorf("opening the %s admin key: %w", c.Provider, err)
		}
		o := opts
		o.BaseURL = c.BaseURL
		return connect.New(c.Provider, string(key), o)
	}
}

// usageReader opens an org's sealed admin key and builds the connector that
// reads its organization's usage.
func usageReader(sealer *secrets.Sealer, opts providers.Options) func(ctx context.Context, c store.ProviderConnection) (providers.OrgUsageReader, error) {
	connector := providerConnector(sealer, opts)
	return func(ctx context.Context, c store.ProviderConnection) (providers.OrgUsageReader, error) {
		conn, err := connector(ctx, c)
		if err != nil {
			return nil, err
		}
		r, ok := conn.(providers.OrgUsageReader)
		if !ok {
			return nil, fmt.Errorf("provider %s cannot report its organization's usage", c.Provider)
		}
		return r, nil
	}
}
