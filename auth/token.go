package auth

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/gatehouse-iot/gatehouse/audit"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/secret"
	"github.com/gatehouse-iot/gatehouse/store"
)

// TokenPrefix starts every admin API token, so that a leaked one is
// recognisable (and greppable by secret scanners) without revealing
// anything about it. Bootstrap tokens have their own (enroll.BootstrapPrefix).
const TokenPrefix = "gha_"

// TokenStore keeps admin API tokens, by the hash of their secret only.
type TokenStore interface {
	CreateAdminToken(ctx context.Context, t store.AdminToken, audit *store.AuditEvent) (store.AdminToken, error)
	GetAdminTokenByHash(ctx context.Context, hash string) (store.AdminToken, error)
}

// TokensConfig wires the admin token service. Store is required.
type TokensConfig struct {
	Store TokenStore
}

// Tokens issues and checks admin API bearer tokens. Unlike Service it
// needs no password hashing, so the API can admit tokens without the web
// UI's user accounts, and the CLI can issue one without building them.
type Tokens struct {
	cfg TokensConfig
}

// NewTokens builds the token service.
func NewTokens(cfg TokensConfig) (*Tokens, error) {
	if cfg.Store == nil {
		return nil, errors.New("auth: token Store is required")
	}
	return &Tokens{cfg: cfg}, nil
}

// Token is an authenticated admin token as shown to callers: never its
// secret or hash.
type Token struct {
	ID        string
	Name      string
	Role      Role
	CreatedAt time.Time
}

// Actor names the token in audit events.
func (t Token) Actor() string { return "token:" + t.Name }

// Issue creates a token for role and returns its secret, which is shown
// once: only its hash is stored. actor is who asks, for the audit event
// written with the token.
func (t *Tokens) Issue(ctx context.Context, actor, name string, role Role) (string, error) {
	if !role.Valid() {
		return "", errBadRole
	}
	s := secret.New(TokenPrefix)
	// The store sets the event's object id to the token's.
	if _, err := t.cfg.Store.CreateAdminToken(ctx, store.AdminToken{Name: name, Hash: secret.Hash(s), Role: string(role)},
		audit.Event(actor, "admin_token.create", "admin_token", "", "name="+name+" role="+string(role))); err != nil {
		return "", err
	}
	return s, nil
}

// Check authenticates a bearer secret and checks that its role is at least
// min. An unknown or revoked token is fault.Unauthenticated (and nothing
// else is: the API answers it with an invalid_token challenge), a weaker
// role fault.PermissionDenied; other errors are the store's.
func (t *Tokens) Check(ctx context.Context, bearer string, min Role) (Token, error) {
	st, err := t.cfg.Store.GetAdminTokenByHash(ctx, secret.Hash(strings.TrimSpace(bearer)))
	if fault.Is(err, fault.NotFound) {
		return Token{}, fault.New(fault.Unauthenticated, "unknown or revoked admin token")
	}
	if err != nil {
		return Token{}, err
	}
	tok := Token{ID: st.ID, Name: st.Name, Role: Role(st.Role), CreatedAt: st.CreatedAt}
	if err := tok.Role.Require(min); err != nil {
		return Token{}, err
	}
	return tok, nil
}
