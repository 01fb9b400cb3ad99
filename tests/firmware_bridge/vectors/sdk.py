"""Wire vectors from the Bluetooth specification and the Polar BLE SDK's own unit tests.

Written as literals (hex) with their source; expected values are the ones the source asserts.
"""

from __future__ import annotations

# --- Heart Rate Measurement 0x2A37 -------------------------------------------------------------
# movisens/SmartGattLib src/test/java/HeartRateMeasurementTest.java
HRS_SMARTGATTLIB = bytes.fromhex("16 48 54 01 EC 02")  # HR 72, contact ok, RR [340, 748]/1024 s
# Constructed from the HRS 1.0 spec: uint16 HR 72, energy 1000 kJ, RR 1024 (= 1 s)
HRS_SPEC_UINT16_EE = bytes.fromhex("19 48 00 E8 03 00 04")
# cal-id/Polar-H7-Pi README: flags 0x16, 60 bpm, RR 0x0411/1024 s
HRS_POLAR_H7 = bytes.fromhex("16 3c 11 04")

# --- PMD data frames (…/pmd/model/EcgDataTest.kt, AccDataTest.kt) -----------------------------
# ECG type 0: timestamp 2,000,000,000 ns, samples [-32766, 32770] µV
PMD_ECG_TYPE0 = bytes.fromhex("00 00 94 35 77 00 00 00 00 0002 80 FF 02 80 00")

# ACC raw type 1 (H10), 52 Hz: first samples (-9, -1, 999), (-8, -2, 997); 40 samples
PMD_ACC_RAW_TYPE1 = bytes.fromhex(
    "02 00 94 35 77 00 00 00 00 01"
    "F7 FF FF FF E7 03 F8 FF FE FF E5 03 F9 FF FF FF E5 03 FA FF FF FF E6 03 FA FF FE FF E6 03"
    "F9 FF FF FF E5 03 F8 FF FF FF E6 03 F8 FF FE FF E6 03 FA FF FF FF E5 03 FA FF FF FF E7 03"
    "FA FF FF FF E5 03 F8 FF FF FF E6 03 F7 FF FF FF E6 03 F8 FF FE FF E6 03 F9 FF FE FF E7 03"
    "F9 FF 00 00 E6 03 F9 FF FF FF E6 03 F7 FF FE FF E5 03 F9 FF FF FF E5 03 F9 FF FF FF E5 03"
    "FA FF 00 00 E6 03 F9 FF FE FF E6 03 F8 FF FF FF E6 03 F8 FF FF FF E5 03 F9 FF FF FF E6 03"
    "F9 FF FF FF E5 03 FA FF FF FF E6 03 F9 FF FF FF E5 03 F9 FF FF FF E5 03 F8 FF FE FF E6 03"
    "F9 FF FF FF E6 03 F9 FF FF FF E6 03 F9 FF 00 00 E5 03 F9 FF FE FF E6 03 F8 FF FE FF E6 03"
    "F7 FF FE FF E6 03"
)

# ACC compressed type 0 (0x80, Verity Sense), factor 2.44e-4, previous timestamp 100 ns:
# reference (1905, 27376, -29282), then one block of 56 samples x 10 bits; 57 samples;
# sample 1 = (1905 + 190, 27376 - 105, -29282 - 85); mg = int(factor * raw * 1000)
PMD_ACC_COMPRESSED_TYPE0 = bytes.fromhex(
    "02 00 94 35 77 00 00 00 00 80"
    "71 07 F0 6A 9E 8D 0A 38 BE 5C BE BA 2F 96 B3 EE 4B E5 AD FB 42 B9 EB BE 4C FE BA 2F 92 BF"
    "EE 4B E4 B1 FB 12 B9 EC BD 3C 3E BB 2F 8F D3 DE 4B E3 B5 F7 D2 B8 ED BD 30 7E 7B 2F 8B E3"
    "CE 8B E2 BA F7 A2 B8 EE BC 20 BE 7B 2F 88 F3 CE CB E1 BD EF 52 F8 EF BC 18 FE 3B 2F 84 03"
    "BF CB E0 C2 EF 32 B8 F0 BB 04 4E BC 2E 81 13 AF 0B E0 C6 EF F2 F7 F1 B9 FC 7D BC 2E 7D 27"
    "9F 4B DF CA EB C2 F7 F2 B8 EC CD 7C 2E 7B 37 8F 4B DE CE E3 92 F7 F3 B8 E0 0D FD 2D 77 4B"
    "7F CB DD D2 DF 62 37 F5 B7 D4 4D BD 2D 74 5B 6F CB DC D7 D7 32 37 F6 B5 C8 8D 7D 2D 71 6B"
    "4F 4B DC DC D3 F2 36 F7 B4 BC DD FD 2C 6F 7B 3F 4B DB E0 CF D2 36 F8 B2 B0 2D BE 2C 6C 8F"
    "1F CB DA E3 C7 A2 76 F9"
)
ACC_COMPRESSED_TYPE0_FACTOR = 2.44e-4
ACC_COMPRESSED_TYPE0_RAW = {
    0: (1905, 27376, -29282),
    1: (2095, 27271, -29367),
    56: (12274, 20173, -32449),  # research notes §1.5 (decoded there, cross-checked here)
}

# ACC compressed type 1 (0x81): [[-15, 20, 1008], [-20, 17, 1008]] mg (the test comment's -22
# for reference x is wrong; the SDK assertion is -15)
PMD_ACC_COMPRESSED_TYPE1 = bytes.fromhex(
    "02 65 00 00 00 00 00 00 00 81F1 FF 14 00 F0 03 06 01 7B 0F 08"
)

# --- Control point --------------------------------------------------------------------------
# …/pmd/PmdSettingTest.kt: 52 Hz, 16 bit, ranges {245, 500, 1000, 2000}, 3 channels
PMD_SETTINGS_PARAMS = bytes.fromhex(
    "00 01 34 00 01 01 10 00 02 04 F5 00 F4 01 E8 03 D0 07 04 01 03"
)
# …/pmd/BlePmdClientControlPointResponseTest.kt
PMD_CP_GET_ACC_OK = bytes.fromhex("F0 01 02 00 00 FF FF FF")  # GET / ACC / success / no more
PMD_CP_FAILURE_7 = bytes.fromhex("F0 01 06 07 00")  # INVALID_RESOLUTION
# phdiethelm/h10_ecg exploration/gatttool.md: get ECG settings -> 130 Hz, 14 bit
PMD_CP_GET_ECG_H10 = bytes.fromhex("f0 01 00 00 00 00 01 82 00 01 01 0e 00")
# H10 ECG start (bleakheart encoder; Serena-Project START_ECG_CMD; gatttool.md)
PMD_CMD_START_ECG_H10 = bytes.fromhex("02 00 00 01 82 00 01 01 0E 00")
# ACC start 200 Hz, 16 bit, +-2 g (bleakheart encoder)
PMD_CMD_START_ACC_200 = bytes.fromhex("02 02 00 01 C8 00 01 01 10 00 02 01 02 00")
# Verity Sense PPG in SDK mode: 176 Hz, 4 channels, 22 bit (after `02 09`, SDK mode on)
PMD_CMD_START_PPG_VERITY = bytes.fromhex("02 01 00 01 B0 00 04 01 04 01 01 16 00")
PMD_CMD_STOP_ECG = bytes.fromhex("03 00")
