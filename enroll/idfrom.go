package enroll

import (
	"crypto/x509"
	"encoding/asn1"

	"github.com/gatehouse-iot/gatehouse/deviceid"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/store"
)

// oidSerialNumber is the subject attribute serialNumber (X.520, 2.5.4.5),
// where device stacks and IEEE 802.1AR put the device serial.
var oidSerialNumber = asn1.ObjectIdentifier{2, 5, 4, 5}

// CSRSerialNumber returns the serialNumber attribute of csr's subject as a
// device id. A subject without one is csr_invalid; one with several is too
// (which one names the device would be a guess); a value outside the device
// id grammar is invalid_argument, as any device id is.
func CSRSerialNumber(csr *x509.CertificateRequest) (string, error) {
	var (
		id    string
		found int
	)
	for _, a := range csr.Subject.Names {
		if !a.Type.Equal(oidSerialNumber) {
			continue
		}
		found++
		s, ok := a.Value.(string)
		if !ok {
			return "", fault.New(fault.CSRInvalid, "the csr subject's serialNumber is not a string")
		}
		id = s
	}
	switch {
	case found == 0:
		return "", fault.New(fault.CSRInvalid,
			"the csr subject has no serialNumber (2.5.4.5), and the profile takes the device id from it: add serialNumber=<device id> to the subject")
	case found > 1:
		return "", fault.New(fault.CSRInvalid, "the csr subject has %d serialNumber attributes, want one: the device id", found)
	}
	if err := deviceid.Check("the csr subject's serialNumber", id); err != nil {
		return "", err
	}
	return id, nil
}

// deviceIDOf names the device an enrollment with the unused token tok
// creates or claims: the token's fixed id, else (device_id_from
// csr_serial_number) the CSR subject's serialNumber, else the request's id,
// else a new name. Whatever else names the device must agree with it: a
// token fixed to one id never enrolls another, and neither does a request
// that names one the CSR does not.
func deviceIDOf(tok store.BootstrapToken, profile store.Profile, req Request, csr *x509.CertificateRequest) (string, error) {
	fixed := tok.DeviceID
	if fixed != "" && req.DeviceID != "" && req.DeviceID != fixed {
		return "", fault.New(fault.InvalidArgument, "this token enrolls device %q only", fixed)
	}
	if profile.IDFrom() == store.DeviceIDFromCSRSerial {
		sn, err := CSRSerialNumber(csr)
		if err != nil {
			return "", err
		}
		switch {
		case fixed != "" && sn != fixed:
			return "", fault.New(fault.InvalidArgument, "this token enrolls device %q only, and the csr's serialNumber is %q", fixed, sn)
		case req.DeviceID != "" && req.DeviceID != sn:
			return "", fault.New(fault.InvalidArgument,
				"device_id %q is not the csr's serialNumber %q, which profile %s takes the device id from", req.DeviceID, sn, profile.Name)
		}
		return sn, nil
	}
	switch {
	case fixed != "":
		return fixed, nil
	case req.DeviceID != "":
		// A token that names no device may create one, never claim one: a
		// pre-registered device is reserved for a token fixed to its id
		// (Enrollment.ClaimPending).
		return req.DeviceID, nil
	}
	return newDeviceID(), nil
}
