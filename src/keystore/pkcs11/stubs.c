/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The function list, and every PKCS#11 function the module does not offer: each answers
 * CKR_FUNCTION_NOT_SUPPORTED (after the usual CKR_CRYPTOKI_NOT_INITIALIZED), the two of the
 * parallel API CKR_FUNCTION_NOT_PARALLEL. */
#include "p11.h"

CK_RV C_WaitForSlotEvent(CK_FLAGS flags, CK_SLOT_ID *slot, void *reserved)
{
    P11_LOCKED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_InitToken(CK_SLOT_ID slot_id, unsigned char *pin, unsigned long pin_len, unsigned char *label)
{
    P11_LOCKED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_InitPIN(CK_SESSION_HANDLE session, unsigned char *pin, unsigned long pin_len)
{
    P11_LOCKED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_SetPIN(CK_SESSION_HANDLE session, unsigned char *old_pin, unsigned long old_len, unsigned char *new_pin,
               unsigned long new_len)
{
    P11_LOCKED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_GetOperationState(CK_SESSION_HANDLE session, unsigned char *operation_state, unsigned long *operation_state_len)
{
    P11_LOCKED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_SetOperationState(CK_SESSION_HANDLE session, unsigned char *operation_state, unsigned long operation_state_len,
                          CK_OBJECT_HANDLE encryption_key, CK_OBJECT_HANDLE authentiation_key)
{
    P11_LOCKED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_CreateObject(CK_SESSION_HANDLE session, CK_ATTRIBUTE *templ, unsigned long count, CK_OBJECT_HANDLE *object)
{
    P11_LOCKED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_CopyObject(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE *templ, unsigned long count,
                   CK_OBJECT_HANDLE *new_object)
{
    P11_LOCKED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_GetObjectSize(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, unsigned long *size)
{
    P11_LOCKED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_SetAttributeValue(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE *templ, unsigned long count)
{
    P11_LOCKED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_EncryptInit(CK_SESSION_HANDLE session, CK_MECHANISM *mechanism, CK_OBJECT_HANDLE key)
{
    P11_LOCKED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_Encrypt(CK_SESSION_HANDLE session, unsigned char *data, unsigned long data_len, unsigned char *encrypted_data,
                unsigned long *encrypted_data_len)
{
    P11_LOCKED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_EncryptUpdate(CK_SESSION_HANDLE session, unsigned char *part, unsigned long part_len,
                      unsigned char *encrypted_part, unsigned long *encrypted_part_len)
{
    P11_LOCKED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_EncryptFinal(CK_SESSION_HANDLE session, unsigned char *last_encrypted_part,
                     unsigned long *last_encrypted_part_len)
{
    P11_LOCKED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_DecryptUpdate(CK_SESSION_HANDLE session, unsigned char *encrypted_part, unsigned long encrypted_part_len,
                      unsigned char *part, unsigned long *part_len)
{
    P11_LOCKED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_DecryptFinal(CK_SESSION_HANDLE session, unsigned char *last_part, unsigned long *last_part_len)
{
    P11_LOCKED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_DigestInit(CK_SESSION_HANDLE session, CK_MECHANISM *mechanism)
{
    P11_LOCKED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_Digest(CK_SESSION_HANDLE session, unsigned char *data, unsigned long data_len, unsigned char *digest,
               unsigned long *digest_len)
{
    P11_LOCKED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_DigestUpdate(CK_SESSION_HANDLE session, unsigned char *part, unsigned long part_len)
{
    P11_LOCKED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_DigestKey(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE key)
{
    P11_LOCKED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_DigestFinal(CK_SESSION_HANDLE session, unsigned char *digest, unsigned long *digest_len)
{
    P11_LOCKED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_SignRecoverInit(CK_SESSION_HANDLE session, CK_MECHANISM *mechanism, CK_OBJECT_HANDLE key)
{
    P11_LOCKED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_SignRecover(CK_SESSION_HANDLE session, unsigned char *data, unsigned long data_len, unsigned char *signature,
                    unsigned long *signature_len)
{
    P11_LOCKED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_VerifyInit(CK_SESSION_HANDLE session, CK_MECHANISM *mechanism, CK_OBJECT_HANDLE key)
{
    P11_LOCKED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_Verify(CK_SESSION_HANDLE session, unsigned char *data, unsigned long data_len, unsigned char *signature,
               unsigned long signature_len)
{
    P11_LOCKED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_VerifyUpdate(CK_SESSION_HANDLE session, unsigned char *part, unsigned long part_len)
{
    P11_LOCKED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_VerifyFinal(CK_SESSION_HANDLE session, unsigned char *signature, unsigned long signature_len)
{
    P11_LOCKED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_VerifyRecoverInit(CK_SESSION_HANDLE session, CK_MECHANISM *mechanism, CK_OBJECT_HANDLE key)
{
    P11_LOCKED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_VerifyRecover(CK_SESSION_HANDLE session, unsigned char *signature, unsigned long signature_len,
                      unsigned char *data, unsigned long *data_len)
{
    P11_LOCKED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_DigestEncryptUpdate(CK_SESSION_HANDLE session, unsigned char *part, unsigned long part_len,
                            unsigned char *encrypted_part, unsigned long *encrypted_part_len)
{
    P11_LOCKED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_DecryptDigestUpdate(CK_SESSION_HANDLE session, unsigned char *encrypted_part, unsigned long encrypted_part_len,
                            unsigned char *part, unsigned long *part_len)
{
    P11_LOCKED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_SignEncryptUpdate(CK_SESSION_HANDLE session, unsigned char *part, unsigned long part_len,
                          unsigned char *encrypted_part, unsigned long *encrypted_part_len)
{
    P11_LOCKED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_DecryptVerifyUpdate(CK_SESSION_HANDLE session, unsigned char *encrypted_part, unsigned long encrypted_part_len,
                            unsigned char *part, unsigned long *part_len)
{
    P11_LOCKED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_GenerateKey(CK_SESSION_HANDLE session, CK_MECHANISM *mechanism, CK_ATTRIBUTE *templ, unsigned long count,
                    CK_OBJECT_HANDLE *key)
{
    P11_LOCKED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_WrapKey(CK_SESSION_HANDLE session, CK_MECHANISM *mechanism, CK_OBJECT_HANDLE wrapping_key, CK_OBJECT_HANDLE key,
                unsigned char *wrapped_key, unsigned long *wrapped_key_len)
{
    P11_LOCKED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_UnwrapKey(CK_SESSION_HANDLE session, CK_MECHANISM *mechanism, CK_OBJECT_HANDLE unwrapping_key,
                  unsigned char *wrapped_key, unsigned long wrapped_key_len, CK_ATTRIBUTE *templ,
                  unsigned long attribute_count, CK_OBJECT_HANDLE *key)
{
    P11_LOCKED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_DeriveKey(CK_SESSION_HANDLE session, CK_MECHANISM *mechanism, CK_OBJECT_HANDLE base_key, CK_ATTRIBUTE *templ,
                  unsigned long attribute_count, CK_OBJECT_HANDLE *key)
{
    P11_LOCKED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_SeedRandom(CK_SESSION_HANDLE session, unsigned char *seed, unsigned long seed_len)
{
    P11_LOCKED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_GenerateRandom(CK_SESSION_HANDLE session, unsigned char *random_data, unsigned long random_len)
{
    P11_LOCKED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_GetFunctionStatus(CK_SESSION_HANDLE session)
{
    return CKR_FUNCTION_NOT_PARALLEL;
}

CK_RV C_CancelFunction(CK_SESSION_HANDLE session)
{
    return CKR_FUNCTION_NOT_PARALLEL;
}

static CK_FUNCTION_LIST function_list = {
    .version = {2, 40},
    .C_Initialize = C_Initialize,
    .C_Finalize = C_Finalize,
    .C_GetInfo = C_GetInfo,
    .C_GetFunctionList = C_GetFunctionList,
    .C_GetSlotList = C_GetSlotList,
    .C_GetSlotInfo = C_GetSlotInfo,
    .C_GetTokenInfo = C_GetTokenInfo,
    .C_WaitForSlotEvent = C_WaitForSlotEvent,
    .C_GetMechanismList = C_GetMechanismList,
    .C_GetMechanismInfo = C_GetMechanismInfo,
    .C_InitToken = C_InitToken,
    .C_InitPIN = C_InitPIN,
    .C_SetPIN = C_SetPIN,
    .C_OpenSession = C_OpenSession,
    .C_CloseSession = C_CloseSession,
    .C_CloseAllSessions = C_CloseAllSessions,
    .C_GetSessionInfo = C_GetSessionInfo,
    .C_GetOperationState = C_GetOperationState,
    .C_SetOperationState = C_SetOperationState,
    .C_Login = C_Login,
    .C_Logout = C_Logout,
    .C_CreateObject = C_CreateObject,
    .C_CopyObject = C_CopyObject,
    .C_DestroyObject = C_DestroyObject,
    .C_GetObjectSize = C_GetObjectSize,
    .C_GetAttributeValue = C_GetAttributeValue,
    .C_SetAttributeValue = C_SetAttributeValue,
    .C_FindObjectsInit = C_FindObjectsInit,
    .C_FindObjects = C_FindObjects,
    .C_FindObjectsFinal = C_FindObjectsFinal,
    .C_EncryptInit = C_EncryptInit,
    .C_Encrypt = C_Encrypt,
    .C_EncryptUpdate = C_EncryptUpdate,
    .C_EncryptFinal = C_EncryptFinal,
    .C_DecryptInit = C_DecryptInit,
    .C_Decrypt = C_Decrypt,
    .C_DecryptUpdate = C_DecryptUpdate,
    .C_DecryptFinal = C_DecryptFinal,
    .C_DigestInit = C_DigestInit,
    .C_Digest = C_Digest,
    .C_DigestUpdate = C_DigestUpdate,
    .C_DigestKey = C_DigestKey,
    .C_DigestFinal = C_DigestFinal,
    .C_SignInit = C_SignInit,
    .C_Sign = C_Sign,
    .C_SignUpdate = C_SignUpdate,
    .C_SignFinal = C_SignFinal,
    .C_SignRecoverInit = C_SignRecoverInit,
    .C_SignRecover = C_SignRecover,
    .C_VerifyInit = C_VerifyInit,
    .C_Verify = C_Verify,
    .C_VerifyUpdate = C_VerifyUpdate,
    .C_VerifyFinal = C_VerifyFinal,
    .C_VerifyRecoverInit = C_VerifyRecoverInit,
    .C_VerifyRecover = C_VerifyRecover,
    .C_DigestEncryptUpdate = C_DigestEncryptUpdate,
    .C_DecryptDigestUpdate = C_DecryptDigestUpdate,
    .C_SignEncryptUpdate = C_SignEncryptUpdate,
    .C_DecryptVerifyUpdate = C_DecryptVerifyUpdate,
    .C_GenerateKey = C_GenerateKey,
    .C_GenerateKeyPair = C_GenerateKeyPair,
    .C_WrapKey = C_WrapKey,
    .C_UnwrapKey = C_UnwrapKey,
    .C_DeriveKey = C_DeriveKey,
    .C_SeedRandom = C_SeedRandom,
    .C_GenerateRandom = C_GenerateRandom,
    .C_GetFunctionStatus = C_GetFunctionStatus,
    .C_CancelFunction = C_CancelFunction,
};

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ret)
{
    if (!ret)
        return CKR_ARGUMENTS_BAD;
    *ret = &function_list;
    return CKR_OK;
}
