// C++17 check of include/pmp.h: it compiles with warnings as errors, its declarations have C
// linkage, and its types have the sizes the C API promises. Built, linked against the static
// library and run by tests/c_api.rs.
#include "pmp.h"

#include <cstdint>
#include <cstring>
#include <type_traits>

static_assert(sizeof(pmp_status) == sizeof(std::uint32_t), "pmp_status is 32 bits");
static_assert(std::is_same<std::underlying_type<pmp_status>::type, std::uint32_t>::value,
              "pmp_status is a uint32_t enum");
static_assert(std::is_same<pmp_algorithm, std::uint32_t>::value, "pmp_algorithm is uint32_t");
static_assert(PMP_STATUS_OK == 0, "PMP_STATUS_OK is 0");
static_assert(std::is_same<pmp_mode, std::uint32_t>::value, "pmp_mode is uint32_t");
static_assert(std::is_same<pmp_padding, std::uint32_t>::value, "pmp_padding is uint32_t");
static_assert(std::is_same<pmp_mac_algorithm, std::uint32_t>::value, "pmp_mac_algorithm");
static_assert(std::is_same<pmp_pin_format, std::uint32_t>::value, "pmp_pin_format");
// Plain data structs, usable from C++ as they are from C.
static_assert(std::is_standard_layout<pmp_key_info>::value && std::is_trivial<pmp_key_info>::value,
              "pmp_key_info is plain data");
static_assert(std::is_trivial<pmp_transport_keys>::value, "pmp_transport_keys is plain data");
static_assert(std::is_trivial<pmp_translate_item>::value, "pmp_translate_item is plain data");
static_assert(sizeof(pmp_key_info{}.label) == PMP_LABEL_CAP, "label capacity");
static_assert(sizeof(pmp_key_info{}.kcv) == PMP_KCV_CAP, "KCV capacity");
static_assert(sizeof(pmp_issued_key{}.block) == PMP_KEY_BLOCK_CAP, "key block capacity");

int main() {
    const std::uint8_t key[16] = {0xD9, 0xEA, 0x02, 0x51, 0x73, 0x8F, 0x3E, 0xF1,
                                  0x08, 0x85, 0x64, 0x2F, 0xAB, 0x7A, 0xC2, 0xF8};
    char kcv[PMP_KCV_CAP] = {};
    std::size_t written = 0;
    if (pmp_version() == nullptr) {
        return 1;
    }
    pmp_hsm_free(nullptr);
    pmp_hsm *hsm = nullptr;
    if (pmp_hsm_open(nullptr, nullptr, &hsm) != PMP_STATUS_NULL_ARGUMENT || hsm != nullptr) {
        return 3;
    }
    pmp_status status = pmp_kcv(PMP_ALGORITHM_TDES, key, sizeof key, kcv, sizeof kcv, &written);
    if (status != PMP_STATUS_OK || written != 6 || std::strcmp(kcv, "B53005") != 0) {
        return 2;
    }
    if (pmp_abi_version() != PMP_ABI_VERSION || pmp_hsm_close(nullptr) != PMP_STATUS_OK) {
        return 4;
    }
    return 0;
}
