// Package inventory manages fleets, device profiles and devices: the
// validation rules for each, and an audit event for every change, written
// by the store in the change's transaction.
package inventory

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-iot/gatehouse/audit"
	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/deviceid"
	"github.com/gatehouse-iot/gatehouse/enroll"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/store"
)

// Fleets stores fleets.
type Fleets interface {
	CreateFleet(ctx context.Context, f store.Fleet, audit *store.AuditEvent) (store.Fleet, error)
	GetFleet(ctx context.Context, name string) (store.Fleet, error)
	ListFleets(ctx context.Context) ([]store.Fleet, error)
	UpdateFleet(ctx context.Context, f store.Fleet, audit *store.AuditEvent) (store.Fleet, error)
	DeleteFleet(ctx context.Context, name string, audit *store.AuditEvent) error
}

// Profiles stores device profiles.
type Profiles interface {
	CreateProfile(ctx context.Context, p store.Profile, audit *store.AuditEvent) (store.Profile, error)
	GetProfile(ctx context.Context, name string) (store.Profile, error)
	ListProfiles(ctx context.Context) ([]store.Profile, error)
	UpdateProfile(ctx context.Context, p store.Profile, audit *store.AuditEvent) (store.Profile, error)
	DeleteProfile(ctx context.Context, name string, audit *store.AuditEvent) error
}

// Devices stores devices.
type Devices interface {
	CreateDevice(ctx context.Context, d store.Device, audit *store.AuditEvent) (store.Device, error)
	GetDevice(ctx context.Context, id string) (store.Device, error)
	ListDevices(ctx context.Context, f store.DeviceFilter) ([]store.Device, error)
	UpdateDevice(ctx context.Context, d store.Device, audit *store.AuditEvent) (store.Device, error)
	DeleteDevice(ctx context.Context, id string, audit *store.AuditEvent) error
}

// Certificates lists a device's certificates.
type Certificates interface {
	ListCertificates(ctx context.Context, deviceID string) ([]store.Certificate, error)
}

// Config wires the service.
type Config struct {
	Fleets       Fleets
	Profiles     Profiles
	Devices      Devices
	Certificates Certificates
	// Roles lists the role names the CA can encode; profiles may use only these.
	Roles []string
	// MaxValidity caps a profile's certificate validity; default 397 days.
	MaxValidity time.Duration
}

// Service is the inventory domain.
type Service struct{ cfg Config }

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Fleets == nil || cfg.Profiles == nil || cfg.Devices == nil || cfg.Certificates == nil {
		return nil, errors.New("inventory: Fleets, Profiles, Devices and Certificates are required")
	}
	if cfg.MaxValidity == 0 {
		cfg.MaxValidity = 397 * 24 * time.Hour
	}
	return &Service{cfg: cfg}, nil
}

func checkName(kind, name string) error {
	if !ca.ValidName(name) {
		return fault.New(fault.InvalidArgument, "%s name %q must match [A-Za-z0-9._-]{1,64}", kind, name)
	}
	return nil
}

// CreateFleet validates and stores a fleet.
func (s *Service) CreateFleet(ctx context.Context, actor string, f store.Fleet) (store.Fleet, error) {
	if err := checkName("fleet", f.Name); err != nil {
		return store.Fleet{}, err
	}
	if len(f.Description) > 1024 {
		return store.Fleet{}, fault.New(fault.InvalidArgument, "description is longer than 1024 bytes")
	}
	return s.cfg.Fleets.CreateFleet(ctx, f, audit.Event(actor, "fleet.create", "fleet", f.Name, ""))
}

// GetFleet returns a fleet.
func (s *Service) GetFleet(ctx context.Context, name string) (store.Fleet, error) {
	return s.cfg.Fleets.GetFleet(ctx, name)
}

// ListFleets returns all fleets.
func (s *Service) ListFleets(ctx context.Context) ([]store.Fleet, error) {
	return s.cfg.Fleets.ListFleets(ctx)
}

// UpdateFleet changes a fleet's description.
func (s *Service) UpdateFleet(ctx context.Context, actor string, f store.Fleet) (store.Fleet, error) {
	if len(f.Description) > 1024 {
		return store.Fleet{}, fault.New(fault.InvalidArgument, "description is longer than 1024 bytes")
	}
	return s.cfg.Fleets.UpdateFleet(ctx, f, audit.Event(actor, "fleet.update", "fleet", f.Name, ""))
}

// DeleteFleet removes an unused fleet.
func (s *Service) DeleteFleet(ctx context.Context, actor, name string) error {
	return s.cfg.Fleets.DeleteFleet(ctx, name, audit.Event(actor, "fleet.delete", "fleet", name, ""))
}

func (s *Service) checkProfile(p store.Profile) error {
	if err := checkName("profile", p.Name); err != nil {
		return err
	}
	if len(p.KeyTypes) == 0 {
		return fault.New(fault.InvalidArgument, "key_types must list at least one of %s", strings.Join(enroll.KeyTypes, ", "))
	}
	for _, k := range p.KeyTypes {
		if !enroll.ValidKeyType(k) {
			return fault.New(fault.InvalidArgument, "key type %q is not one of %s", k, strings.Join(enroll.KeyTypes, ", "))
		}
	}
	if p.Validity < time.Minute || p.Validity > s.cfg.MaxValidity {
		return fault.New(fault.InvalidArgument, "validity must be between 1m and %s", s.cfg.MaxValidity)
	}
	if p.RenewWindow < 0 || p.RenewWindow > p.Validity {
		return fault.New(fault.InvalidArgument, "renew_window must be between 0 and the validity")
	}
	// A grace is kept in whole seconds: "500ms" would silently become 0,
	// a revocation at renewal.
	if g := p.SupersededGrace; g != nil && (*g < 0 || *g > MaxSupersededGrace || *g%time.Second != 0) {
		return fault.New(fault.InvalidArgument, "superseded_grace must be whole seconds between 0 and %s", MaxSupersededGrace)
	}
	if a := p.RenewAfterExpiry; a != nil && (*a < 0 || *a > MaxRenewAfterExpiry || *a%time.Second != 0) {
		return fault.New(fault.InvalidArgument, "renew_after_expiry must be whole seconds between 0 and %s", MaxRenewAfterExpiry)
	}
	if p.DeviceIDFrom != "" && !slices.Contains(store.DeviceIDSources, p.DeviceIDFrom) {
		return fault.New(fault.InvalidArgument, "device_id_from must be one of %s", strings.Join(store.DeviceIDSources, ", "))
	}
	for _, r := range p.Roles {
		if !slices.Contains(s.cfg.Roles, r) {
			return fault.New(fault.InvalidArgument, "role %q has no OID configured (known roles: %s)", r, strings.Join(s.cfg.Roles, ", "))
		}
	}
	return nil
}

// CreateProfile validates and stores a profile.
func (s *Service) CreateProfile(ctx context.Context, actor string, p store.Profile) (store.Profile, error) {
	if err := s.checkProfile(p); err != nil {
		return store.Profile{}, err
	}
	if p.SupersededGrace == nil {
		p.SupersededGrace = new(store.DefaultSupersededGrace)
	}
	if p.RenewAfterExpiry == nil {
		p.RenewAfterExpiry = new(time.Duration)
	}
	p.ServerKeygen, p.DeviceIDFrom = new(p.KeygenOnServer()), p.IDFrom()
	return s.cfg.Profiles.CreateProfile(ctx, p, audit.Event(actor, "profile.create", "profile", p.Name, profileDetail(p)))
}

// GetProfile returns a profile.
func (s *Service) GetProfile(ctx context.Context, name string) (store.Profile, error) {
	return s.cfg.Profiles.GetProfile(ctx, name)
}

// ListProfiles returns all profiles.
func (s *Service) ListProfiles(ctx context.Context) ([]store.Profile, error) {
	return s.cfg.Profiles.ListProfiles(ctx)
}

// UpdateProfile validates and replaces a profile. It applies to certificates
// issued from now on; existing certificates keep what they were issued with.
func (s *Service) UpdateProfile(ctx context.Context, actor string, p store.Profile) (store.Profile, error) {
	if err := s.checkProfile(p); err != nil {
		return store.Profile{}, err
	}
	return s.cfg.Profiles.UpdateProfile(ctx, p, audit.Event(actor, "profile.update", "profile", p.Name, profileDetail(p)))
}

// DeleteProfile removes an unused profile.
func (s *Service) DeleteProfile(ctx context.Context, actor, name string) error {
	return s.cfg.Profiles.DeleteProfile(ctx, name, audit.Event(actor, "profile.delete", "profile", name, ""))
}

// MaxSupersededGrace bounds a profile's superseded_grace: a replaced
// certificate that stays good for longer than a month is a second identity,
// not a rollout margin.
const MaxSupersededGrace = 30 * 24 * time.Hour

// MaxRenewAfterExpiry bounds a profile's renew_after_expiry: a device
// asleep for more than a year enrolls again.
const MaxRenewAfterExpiry = 365 * 24 * time.Hour

func profileDetail(p store.Profile) string {
	keygen, idFrom := "unchanged", "unchanged"
	if p.ServerKeygen != nil {
		keygen = fmt.Sprint(*p.ServerKeygen)
	}
	if p.DeviceIDFrom != "" {
		idFrom = p.DeviceIDFrom
	}
	return fmt.Sprintf("key_types=%s validity=%s renew_window=%s superseded_grace=%s renew_after_expiry=%s server_keygen=%s device_id_from=%s roles=%s",
		strings.Join(p.KeyTypes, ","), p.Validity, p.RenewWindow, optDuration(p.SupersededGrace),
		optDuration(p.RenewAfterExpiry), keygen, idFrom, strings.Join(p.Roles, ","))
}

func optDuration(d *time.Duration) string {
	if d == nil {
		return "unchanged"
	}
	return d.String()
}

func checkLabels(labels map[string]string) error {
	if len(labels) > 64 {
		return fault.New(fault.InvalidArgument, "a device has at most 64 labels")
	}
	for k, v := range labels {
		if !ca.ValidName(k) {
			return fault.New(fault.InvalidArgument, "label key %q must match [A-Za-z0-9._-]{1,64}", k)
		}
		if len(v) > 256 {
			return fault.New(fault.InvalidArgument, "label %q value is longer than 256 bytes", k)
		}
	}
	return nil
}

// RegisterDevice creates a pending device, to be claimed by an enrollment
// with a token for its id.
func (s *Service) RegisterDevice(ctx context.Context, actor string, d store.Device) (store.Device, error) {
	if err := deviceid.Check("device id", d.ID); err != nil {
		return store.Device{}, err
	}
	if err := checkLabels(d.Labels); err != nil {
		return store.Device{}, err
	}
	if _, err := s.cfg.Fleets.GetFleet(ctx, d.Fleet); err != nil {
		return store.Device{}, err
	}
	if _, err := s.cfg.Profiles.GetProfile(ctx, d.Profile); err != nil {
		return store.Device{}, err
	}
	d.Status = store.DevicePending
	return s.cfg.Devices.CreateDevice(ctx, d, audit.Event(actor, "device.register", "device", d.ID, "fleet="+d.Fleet))
}

// GetDevice returns a device.
func (s *Service) GetDevice(ctx context.Context, id string) (store.Device, error) {
	return s.cfg.Devices.GetDevice(ctx, id)
}

// ListDevices pages through devices.
func (s *Service) ListDevices(ctx context.Context, f store.DeviceFilter) ([]store.Device, error) {
	if f.Status != "" && !f.Status.Valid() {
		return nil, fault.New(fault.InvalidArgument, "unknown status %q", f.Status)
	}
	return s.cfg.Devices.ListDevices(ctx, f)
}

// DeviceCertificates lists a device's certificates.
func (s *Service) DeviceCertificates(ctx context.Context, id string) ([]store.Certificate, error) {
	if _, err := s.cfg.Devices.GetDevice(ctx, id); err != nil {
		return nil, err
	}
	return s.cfg.Certificates.ListCertificates(ctx, id)
}

// DeviceUpdate changes what an operator may edit on a device: its profile
// (for the next certificate) and its labels. Status changes go through
// revocation and suspension, which have their own rules.
type DeviceUpdate struct {
	Profile *string
	Labels  map[string]string
}

// UpdateDevice applies u to device id.
func (s *Service) UpdateDevice(ctx context.Context, actor, id string, u DeviceUpdate) (store.Device, error) {
	d, err := s.cfg.Devices.GetDevice(ctx, id)
	if err != nil {
		return store.Device{}, err
	}
	if u.Profile != nil {
		if _, err := s.cfg.Profiles.GetProfile(ctx, *u.Profile); err != nil {
			return store.Device{}, err
		}
		d.Profile = *u.Profile
	}
	if u.Labels != nil {
		if err := checkLabels(u.Labels); err != nil {
			return store.Device{}, err
		}
		d.Labels = u.Labels
	}
	return s.cfg.Devices.UpdateDevice(ctx, d, audit.Event(actor, "device.update", "device", id, ""))
}

// DeleteDevice removes a device that was never issued a certificate.
func (s *Service) DeleteDevice(ctx context.Context, actor, id string) error {
	err := s.cfg.Devices.DeleteDevice(ctx, id, audit.Event(actor, "device.delete", "device", id, ""))
	if fault.Is(err, fault.Conflict) {
		return fault.New(fault.Conflict, "device %s holds certificates: revoke it instead of deleting it", id)
	}
	return err
}

// DefaultProfile is what `gatehouse init` creates: P-256, 30 days, renewable
// in the last 10 days, no extra roles.
func DefaultProfile() store.Profile {
	return store.Profile{Name: "default", KeyTypes: []string{"P-256"}, Validity: 30 * 24 * time.Hour,
		RenewWindow: 10 * 24 * time.Hour}
}
