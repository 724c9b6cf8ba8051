package apitypes

import "time"

// IDevIDVendor is a vendor PKI registered for a fleet (IDevID enrollment).
// Lists carry what the PEMs say, not the PEMs: AnchorsPEM and
// IntermediatesPEM are only in GET .../idevid-vendors/{vendor}. Anchors,
// Intermediates and CRLs are never null.
type IDevIDVendor struct {
	Fleet            string       `json:"fleet"`
	Name             string       `json:"name"`
	Profile          string       `json:"profile"`
	IDFrom           string       `json:"id_from"`
	IDPrefix         string       `json:"id_prefix"`
	AllowReenroll    bool         `json:"allow_reenroll"`
	RequireAllowList bool         `json:"require_allowlist"`
	Anchors          []VendorCert `json:"anchors"`
	Intermediates    []VendorCert `json:"intermediates"`
	CRLs             []VendorCRL  `json:"crls"`
	AllowListSize    int          `json:"allowlist_size"`
	CreatedAt        time.Time    `json:"created_at"`
	UpdatedAt        time.Time    `json:"updated_at"`
	AnchorsPEM       string       `json:"anchors_pem,omitempty"`
	IntermediatesPEM string       `json:"intermediates_pem,omitempty"`
}

// VendorCert describes a vendor anchor or intermediate.
type VendorCert struct {
	Subject     string    `json:"subject"`
	Fingerprint string    `json:"sha256_fingerprint"`
	NotAfter    time.Time `json:"not_after"`
}

// VendorCRL describes a stored vendor CRL, the answer of PUT
// .../idevid-vendors/{vendor}/crls. Number is decimal ("" when the list has
// none); Stale is true past NextUpdate: IDevIDs it covers are refused
// (idevid_crl_stale) until a fresh list is imported.
type VendorCRL struct {
	Issuer     string    `json:"issuer"`
	Number     string    `json:"number"`
	ThisUpdate time.Time `json:"this_update"`
	NextUpdate time.Time `json:"next_update"`
	Entries    int       `json:"entries"`
	Stale      bool      `json:"stale"`
}

// IDevIDVendorList answers GET /api/v1/fleets/{fleet}/idevid-vendors.
type IDevIDVendorList struct {
	Vendors []IDevIDVendor `json:"vendors"`
}

// IDevIDVendorRequest is the body of POST
// /api/v1/fleets/{fleet}/idevid-vendors. IDFrom left out is serial_number.
type IDevIDVendorRequest struct {
	Name             string `json:"name"`
	Profile          string `json:"profile"`
	AnchorsPEM       string `json:"anchors_pem"`
	IntermediatesPEM string `json:"intermediates_pem"`
	IDFrom           string `json:"id_from"`
	IDPrefix         string `json:"id_prefix"`
	AllowReenroll    bool   `json:"allow_reenroll"`
	RequireAllowList bool   `json:"require_allowlist"`
}

// IDevIDVendorUpdate is the body of PATCH
// /api/v1/fleets/{fleet}/idevid-vendors/{vendor}; a nil field is left
// unchanged.
type IDevIDVendorUpdate struct {
	Profile          *string `json:"profile"`
	AnchorsPEM       *string `json:"anchors_pem"`
	IntermediatesPEM *string `json:"intermediates_pem"`
	IDFrom           *string `json:"id_from"`
	IDPrefix         *string `json:"id_prefix"`
	AllowReenroll    *bool   `json:"allow_reenroll"`
	RequireAllowList *bool   `json:"require_allowlist"`
}

// AllowListResult answers PUT .../idevid-vendors/{vendor}/allowlist: the
// number of distinct serials the vendor's allow-list now holds.
type AllowListResult struct {
	Fleet  string `json:"fleet"`
	Vendor string `json:"vendor"`
	Count  int    `json:"count"`
}
